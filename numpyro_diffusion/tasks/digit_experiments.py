"""Plug-and-play experiments on the 8x8 digits: the constraint models, inpainting compared
across samplers, and the classifier-free guidance trade-off.

Shared by ``notebooks/03_plug_and_play_digits.ipynb``, ``benchmarks/digits.py`` and
the tests, which run them at small settings. Images are ``(8, 8, 1)`` in ``[-1, 1]``.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from jax import Array

from numpyro_diffusion import Diffusion, current_noise_level, diffusion_prior, guided
from numpyro_diffusion.infer import AnnealedMCMC, get_kernel, plug_and_play
from numpyro_diffusion.metrics import classifier_score, frechet_distance, psnr
from numpyro_diffusion.tasks.digits import DigitModels
from numpyro_diffusion.tasks.inpainting import inpainting_model, replacement_inpainting

__all__ = [
    "classifier_constraint_model",
    "symmetry_model",
    "symmetry_error",
    "diversity",
    "lower_half_mask",
    "inpaint_annealed",
    "inpaint_plug_and_play",
    "inpaint_replacement",
    "inpainting_psnr",
    "cfg_tradeoff",
]


def _images_plate(num_images: int | None):
    return contextlib.nullcontext() if num_images is None else numpyro.plate("images", num_images)


def classifier_constraint_model(
    prior: Diffusion,
    classifier: Any,
    classifier_params: Any,
    digit: int,
    weight: float = 1.0,
    num_images: int | None = None,
    denoised: bool = False,
) -> Array:
    """``p(x) p(y = digit | x)^weight`` for an unconditional prior and a clean-image classifier.

    ``denoised=True`` shows the classifier Tweedie's estimate ``prior.denoise(x, t)``
    at the current noise level instead of ``x``: a noise-aware stand-in for
    ``p_t(y | x_t)`` for annealed MCMC, whose ``x`` carries level-``t`` noise (a clean-image
    classifier on noisy ``x`` steers the high levels at random). ``plug_and_play``
    optimises a clean ``x``, so leave it ``False`` there. ``num_images`` puts
    independent images under a plate; ``x`` is ``(8, 8, 1)`` or ``(num_images, 8, 8, 1)``.
    """
    with _images_plate(num_images):
        x = diffusion_prior("x", prior)
        images = x.reshape((-1, *prior.event_shape))
        if denoised:
            t = current_noise_level()
            images = jax.vmap(lambda image: prior.denoise(image, t))(images)
        log_probs = jax.nn.log_softmax(classifier.apply(classifier_params, images))
        numpyro.factor("classifier", weight * log_probs[:, digit].reshape(x.shape[:-3]))
    return x


def symmetry_model(
    prior: Diffusion,
    weight: float = 2.0,
    cond: Any = None,
    num_images: int | None = None,
    denoised: bool = False,
) -> Array:
    """Graikos et al.'s hand-made constraint: ``-weight ||x - mirror(x)||^2`` (left-right).

    ``denoised=True`` applies it to Tweedie's estimate ``prior.denoise(x, t)`` (for
    annealed MCMC; see :func:`classifier_constraint_model`). ``x`` is ``(8, 8, 1)`` or,
    with ``num_images``, ``(num_images, 8, 8, 1)``.
    """
    with _images_plate(num_images):
        x = diffusion_prior("x", prior, cond=cond)
        images = x
        if denoised:
            t = current_noise_level()
            flat = x.reshape((-1, *prior.event_shape))
            images = jax.vmap(lambda image: prior.denoise(image, t))(flat).reshape(x.shape)
        asymmetry = jnp.sum((images - images[..., ::-1, :]) ** 2, axis=(-3, -2, -1))
        numpyro.factor("symmetry", -weight * asymmetry)
    return x


def symmetry_error(images: Array) -> np.ndarray:
    """``||x - mirror(x)||^2`` per image of ``(N, H, W, C)``: ``(N,)``."""
    images = np.asarray(images)
    return np.sum((images - images[:, :, ::-1]) ** 2, axis=(1, 2, 3))


def diversity(images: Array) -> float:
    """Mean pairwise Euclidean distance between ``(N, ...)`` images (N >= 2)."""
    flat = np.asarray(images, np.float64).reshape(len(images), -1)
    if len(flat) < 2:
        raise ValueError("diversity needs at least two images.")
    sq = np.sum((flat[:, None] - flat[None]) ** 2, -1)
    return float(np.sqrt(np.maximum(sq, 0.0))[np.triu_indices(len(flat), 1)].mean())


def lower_half_mask(shape: Sequence[int] = (8, 8, 1)) -> np.ndarray:
    """Observe the upper half of each image; the lower half is to be inpainted."""
    mask = np.zeros(shape, bool)
    mask[: shape[0] // 2] = True
    return mask


def _progress(total: int, label: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=label, file=sys.stderr, disable=not enabled)


def inpaint_annealed(
    prior: Diffusion,
    rng_key: Array,
    images: Array,
    mask: Array,
    *,
    kernel: str = "hmc",
    num_chains: int = 8,
    levels: Any = 50,
    steps_per_level: int = 6,
    noise_std: float = 0.05,
    step_size: Any = None,
    progress_bar: bool = True,
) -> tuple[np.ndarray, int]:
    """Annealed MCMC on :func:`inpainting_model`, one image at a time (compiled once).

    ``step_size`` as in :class:`AnnealedMCMC`; for the unadjusted kernels it defaults
    to the ``"sigma"`` rule capped at ``0.5 noise_std^2``: the likelihood's curvature
    ``1 / noise_std^2`` makes larger Langevin steps unstable. Returns the draws
    ``(N, num_chains, *event_shape)`` and the total number of divergences.
    """
    if step_size is None and kernel in ("ula", "uhmc"):
        walk = prior.schedule.walk_levels(levels)
        steps, _ = get_kernel(kernel).rule_step_sizes("sigma", prior.schedule, walk)
        cap = 0.5 * noise_std**2 if kernel == "ula" else 0.5 * noise_std
        step_size = np.minimum(steps, cap).astype(np.float32)
    sampler = AnnealedMCMC(
        inpainting_model,
        kernel=kernel,
        num_chains=num_chains,
        steps_per_level=steps_per_level,
        levels=levels,
        step_size=step_size,
        progress_bar=False,
    )
    draws, divergences = [], 0
    with _progress(len(images), f"annealed {kernel}", progress_bar) as bar:
        for i, image in enumerate(np.asarray(images)):
            sampler.run(
                jax.random.fold_in(rng_key, i),
                prior,
                jnp.asarray(image),
                jnp.asarray(mask),
                noise_std=noise_std,
            )
            draws.append(np.asarray(sampler.get_samples()["x"]))
            divergences += sampler.num_divergent
            bar.update()
    return np.stack(draws), divergences


def inpaint_plug_and_play(
    prior: Diffusion,
    rng_key: Array,
    images: Array,
    mask: Array,
    *,
    num_samples: int = 8,
    num_steps: int = 500,
    noise_std: float = 0.05,
) -> np.ndarray:
    """``plug_and_play`` point estimates, ``num_samples`` restarts per image in one batch.

    Every image is repeated ``num_samples`` times under the model's plate; different
    starts and noise give different estimates. Returns ``(N, num_samples, *event)``.
    """
    images = np.asarray(images)
    repeated = np.repeat(images, num_samples, axis=0)
    result = plug_and_play(
        functools.partial(inpainting_model, prior, noise_std=noise_std),
        rng_key,
        jnp.asarray(repeated),
        jnp.asarray(mask),
        num_steps=num_steps,
    )
    x = np.asarray(result.params["x"])
    return x.reshape(len(images), num_samples, *images.shape[1:])


def inpaint_replacement(
    prior: Diffusion,
    rng_key: Array,
    images: Array,
    mask: Array,
    *,
    num_samples: int = 8,
    levels: Any = None,
) -> np.ndarray:
    """Replacement reverse diffusion for every image at once: ``(N, num_samples, *event)``."""
    keys = jax.random.split(rng_key, len(images))

    @jax.jit
    def run(keys, images):
        def one(key, image):
            return replacement_inpainting(prior, key, image, mask, num_samples, levels=levels)

        return jax.vmap(one)(keys, images)

    return np.asarray(run(keys, jnp.asarray(images)))


def inpainting_psnr(draws: np.ndarray, images: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """PSNR on the missing pixels of every draw ``(N, S, *event)``: ``(N, S)``."""
    n, s = draws.shape[:2]
    flat = draws.reshape(n * s, *draws.shape[2:])
    truth = np.repeat(np.asarray(images), s, axis=0)
    return psnr(flat, truth, ~np.asarray(mask, bool)).reshape(n, s)


def cfg_tradeoff(
    models: DigitModels,
    rng_key: Array,
    reference: np.ndarray,
    scales: Sequence[float] = (0.0, 0.1, 0.3, 0.5, 1.0, 2.0, 4.0),
    *,
    num_per_class: int = 100,
    levels: Any = 100,
    model: Diffusion | None = None,
    progress_bar: bool = True,
) -> list[dict[str, float]]:
    """Classifier-free guidance ``p(x|c)^(1+w) p(x)^(-w)`` for every class and ``w``.

    Samples by reverse diffusion (``levels`` respaced steps) ``num_per_class`` images
    of every digit per scale and reports, per scale: the Frechet distance between the
    classifier's penultimate features of the samples and of ``reference`` (held-out
    digits), the classifier score ``exp E KL(p(y|x) || p(y))`` and the classifier's
    accuracy on the intended labels. ``model`` defaults to ``models.eps``.
    """
    model = models.eps if model is None else model
    classifier, params = models.classifier, models.classifier_params
    labels = jnp.arange(10)

    @jax.jit
    def draw(key, scale):
        def one_class(key, label):
            return guided(model, label, scale).sample(key, num_per_class, levels=levels)

        return jax.vmap(one_class)(jax.random.split(key, 10), labels)

    reference_features = np.asarray(classifier.apply(params, jnp.asarray(reference), features=True))
    rows = []
    with _progress(len(scales), "guidance scales", progress_bar) as bar:
        for i, scale in enumerate(scales):
            x = draw(jax.random.fold_in(rng_key, i), jnp.float32(scale))
            x = x.reshape(-1, *x.shape[2:])
            target = np.repeat(np.arange(10), num_per_class)
            logits = classifier.apply(params, x)
            features = np.asarray(classifier.apply(params, x, features=True))
            probs = np.asarray(jax.nn.softmax(logits))
            rows.append(
                {
                    "w": float(scale),
                    "frechet": frechet_distance(features, reference_features),
                    "classifier_score": classifier_score(probs),
                    "accuracy": float(np.mean(probs.argmax(-1) == target)),
                    "diversity": float(
                        np.mean([diversity(np.asarray(x)[target == k][:50]) for k in range(10)])
                    ),
                    "num_samples": int(len(x)),
                }
            )
            bar.update()
    return rows
