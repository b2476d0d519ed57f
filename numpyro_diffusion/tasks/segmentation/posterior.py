"""Segmentation as NumPyro programs over a label-map diffusion prior.

:func:`appearance_model` is the Bayesian one: the relaxed label map ``x`` is a
``diffusion_prior`` site, per-pixel class probabilities are ``softmax(sharpness * x)``,
each image has latent class colours and scales with weak priors, and every pixel is a
mixture of the class colour distributions. :func:`clustering_model` is Graikos et al.'s
constraint variant: agreement with a colour clustering of the image (mutual
information) and a coarse class-proportion prior, as ``numpyro.factor``s.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax import Array

import numpyro_diffusion as nd

__all__ = [
    "BRIGHTNESS_MEDIAN",
    "BrightnessNormal",
    "brightness_spread",
    "class_colour_distribution",
    "class_probabilities",
    "grey_axis_log_density",
    "pixel_log_likelihood",
    "pixel_responsibilities",
    "appearance",
    "appearance_model",
    "clustering_model",
    "label_shift",
    "appearance_hold",
    "discounted_prior_weight",
    "mutual_information",
]


def class_probabilities(x: Array, sharpness: float) -> Array:
    """Per-pixel class probabilities ``(..., H, W, K)`` of a relaxed map ``x`` of the
    same shape (one-hot maps scaled to [-1, 1] give nearly hard probabilities)."""
    return jax.nn.softmax(sharpness * x, axis=-1)


def appearance_hold(prior: Any) -> Array:
    """The precision added to the appearance offsets' standard normal prior at the
    current noise level ``t`` (:func:`numpyro_diffusion.current_noise_level`) of
    ``prior``'s schedule: ``1 / abar_t - 1 / abar_0``, the map's noise-to-signal ratio
    less its value at the last level (zero there).

    Annealing walks every latent through the levels. With the map pure noise its random
    class weights give each chain's class colours random pixels to fit, and a chain
    whose colours of two similar classes swap or merge keeps that mode once the map
    forms. Held at their prior (the city's palette) until the map's signal rises, the
    colours meet a formed map."""
    abar = prior.schedule.alpha_bars
    return 1.0 / abar[nd.current_noise_level()] - 1.0 / abar[0]


def discounted_prior_weight(prior: Any, prior_weight: float) -> Array:
    """The power of ``prior``'s density at the current noise level ``t`` for a map prior
    discounted to ``prior_weight`` at ``t = 0``: ``1 - (1 - prior_weight) abar_t /
    abar_0``.

    What the prior learned from its city is the signal in ``p_t``; the noise that
    fills it at high levels is known exactly, and a power of it would widen the noise
    (variance ``1 / prior_weight`` at the top), leaving the pixels to set the map there
    before the prior's shapes form. So the discount grows with the signal fraction and
    the last level's target is ``p_0^prior_weight``."""
    abar = prior.schedule.alpha_bars
    return 1.0 - (1.0 - prior_weight) * abar[nd.current_noise_level()] / abar[0]


BRIGHTNESS_MEDIAN = 0.04  # prior median of a class's brightness spread


class BrightnessNormal(dist.Distribution):
    """An RGB colour ``Normal(loc, scale^2 I + brightness^2 1 1^T)``: independent noise of
    ``scale`` in each channel plus a shift of ``brightness`` common to all three (a
    lighter or darker version of ``loc``). ``loc`` ``(..., 3)``; ``scale`` and
    ``brightness`` ``(...)``."""

    arg_constraints = {
        "loc": dist.constraints.real_vector,
        "scale": dist.constraints.positive,
        "brightness": dist.constraints.nonnegative,
    }
    support = dist.constraints.real_vector
    reparametrized_params = ["loc", "scale", "brightness"]

    def __init__(self, loc, scale, brightness, *, validate_args=None):
        batch_shape = jax.lax.broadcast_shapes(
            jnp.shape(loc)[:-1], jnp.shape(scale), jnp.shape(brightness)
        )
        self.loc = jnp.broadcast_to(loc, (*batch_shape, 3))
        self.scale = jnp.broadcast_to(scale, batch_shape)
        self.brightness = jnp.broadcast_to(brightness, batch_shape)
        super().__init__(batch_shape, (3,), validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        k_noise, k_shift = jax.random.split(key)
        shape = sample_shape + self.batch_shape
        noise = jax.random.normal(k_noise, (*shape, 3)) * self.scale[..., None]
        shift = jax.random.normal(k_shift, shape) * self.brightness
        return self.loc + noise + shift[..., None]

    def log_prob(self, value):
        return grey_axis_log_density(value - self.loc, self.scale, self.brightness)


def grey_axis_log_density(diff, scale, brightness):
    """``log N(diff; 0, scale^2 I + brightness^2 1 1^T)`` over the last axis (RGB) of
    ``diff`` ``(..., 3)``, for ``scale`` and ``brightness`` ``(...)``; NumPy arrays give
    NumPy (the baselines' float64), JAX arrays JAX."""
    xp = np if isinstance(diff, np.ndarray) else jnp
    grey = diff.sum(-1) / math.sqrt(3.0)  # the part along (1, 1, 1) / sqrt(3)
    var = scale**2
    var_grey = var + 3.0 * brightness**2
    return -0.5 * (
        ((diff**2).sum(-1) - grey**2) / var
        + grey**2 / var_grey
        + xp.log(var_grey)
        + 2.0 * xp.log(var)
        + 3.0 * math.log(2.0 * math.pi)
    )


def class_colour_distribution(colours: Array, scales: Array, brightness: Array | None = None):
    """Each class's pixel colours (:class:`BrightnessNormal`) for colours ``(B, K, 3)``,
    scales ``(B, K)`` and brightness ``(B, K)``, batch shape ``(B, 1, 1, K)``
    (broadcasting over pixels): a class's pixels vary in every channel by ``scale`` and
    together, as lighter or darker versions of its colour, by ``brightness`` (texture
    and illumination). ``brightness=None`` is zero."""
    if brightness is None:
        brightness = jnp.zeros_like(scales)
    return BrightnessNormal(
        colours[:, None, None], scales[:, None, None], brightness[:, None, None]
    )


def _class_log_densities(images: Array, colours: Array, scales: Array, brightness=None) -> Array:
    """``log p(y_p | class k)`` ``(B, H, W, K)`` for images ``(B, H, W, 3)`` under
    :func:`class_colour_distribution`."""
    component = class_colour_distribution(colours, scales, brightness)
    return component.log_prob(images[..., None, :])


def pixel_log_likelihood(
    probs: Array, images: Array, colours: Array, scales: Array, brightness: Array | None = None
) -> Array:
    """``log sum_k probs_k p(y | class k)`` per pixel, ``(B, H, W)``."""
    log_densities = _class_log_densities(images, colours, scales, brightness)
    return jax.nn.logsumexp(jnp.log(probs) + log_densities, axis=-1)


def pixel_responsibilities(
    probs: Array, images: Array, colours: Array, scales: Array, brightness: Array | None = None
) -> Array:
    """The posterior class of each pixel given the map and the appearance, ``(B, H, W, K)``."""
    log_densities = _class_log_densities(images, colours, scales, brightness)
    return jax.nn.softmax(jnp.log(probs) + log_densities, -1)


def appearance(
    colour_offsets: Array,
    scale_offsets: Array,
    colour_mean: Array,
    colour_scale: float = 0.1,
    scale_median: float = 0.06,
) -> tuple[Array, Array]:
    """Class colours ``(..., K, 3)`` and scales ``(..., K)`` from the standard normal
    offsets of :func:`appearance_model`."""
    colours = jnp.asarray(colour_mean) + colour_scale * colour_offsets
    return colours, scale_median * jnp.exp(0.5 * scale_offsets)


def brightness_spread(
    brightness_offsets: Array, brightness_median: float = BRIGHTNESS_MEDIAN
) -> Array:
    """Each class's brightness spread ``(..., K)`` from the standard normal offsets of
    :func:`appearance_model` (``LogNormal(log brightness_median, 0.5)``)."""
    return brightness_median * jnp.exp(0.5 * brightness_offsets)


def appearance_model(
    prior: Any,
    images: Array,
    colour_mean: Array,
    colour_scale: float = 0.1,
    scale_median: float = 0.06,
    sharpness: float = 4.0,
    proportions: Array | None = None,
    source_proportions: Array | None = None,
    concentration: float = 40.0,
    brightness_median: float | None = BRIGHTNESS_MEDIAN,
    hold_appearance: bool = False,
    prior_weight: float = 1.0,
) -> None:
    """Label maps ``x`` ``(B, H, W, K)`` under ``prior``; per image, class colours
    ``(K, 3)`` ~ ``Normal(colour_mean, colour_scale)`` and scales ``(K,)`` ~
    ``LogNormal(log scale_median, 0.5)``; pixels of ``images`` ``(B, H, W, 3)`` a
    mixture of ``Normal(colour_k, scale_k)`` with weights ``softmax(sharpness x)``.

    With ``proportions`` and ``source_proportions`` ``(K,)`` the prior is corrected for
    label shift: its maps' class shares ``pi`` (``Dirichlet(concentration *
    source_proportions)`` in the prior's training city) are reweighted to
    ``Dirichlet(concentration * proportions)`` by a factor (:func:`label_shift`).

    ``prior_weight`` tempers the map prior to ``p(x)^prior_weight`` (a power prior:
    a prior learned from another city's maps, discounted; ``numpyro.handlers.scale`` on
    the site), reached at ``t = 0`` along :func:`discounted_prior_weight`.

    ``hold_appearance=True`` (for samplers that walk the noise levels) holds the
    appearance offsets near their prior while the map is noise: at level ``t`` their
    prior precision gains :func:`appearance_hold`, which is zero at ``t = 0``, so the
    last level's target is the model above.

    The appearance latents are sampled as standard normal offsets (sites
    ``"colour_offsets"`` and ``"scale_offsets"``; ``"colours"`` and ``"scales"`` are
    deterministic), so a sampler sees them at unit prior scale, like the map.
    """
    k = prior.event_shape[-1]
    with numpyro.plate("images", images.shape[0]):
        offsets = numpyro.sample(
            "colour_offsets",
            dist.Normal(0.0, 1.0).expand((k, 3)).to_event(2),
            infer={"palette": colour_mean, "colour_scale": colour_scale},  # for a start's use
        )
        log_offsets = numpyro.sample(
            "scale_offsets", dist.Normal(0.0, 1.0).expand((k,)).to_event(1)
        )
        colours, scales = appearance(offsets, log_offsets, colour_mean, colour_scale, scale_median)
        numpyro.deterministic("colours", colours)
        numpyro.deterministic("scales", scales)
        brightness = None
        if brightness_median is not None:
            brightness_offsets = numpyro.sample(
                "brightness_offsets", dist.Normal(0.0, 1.0).expand((k,)).to_event(1)
            )
            brightness = brightness_spread(brightness_offsets, brightness_median)
            numpyro.deterministic("brightness", brightness)
        with numpyro.handlers.scale(scale=discounted_prior_weight(prior, prior_weight)):
            x = nd.diffusion_prior("labels", prior)
        probs = class_probabilities(x, sharpness)
        if hold_appearance:
            held = [offsets, log_offsets] + ([] if brightness is None else [brightness_offsets])
            squares = sum(jnp.sum(h**2, tuple(range(1, h.ndim))) for h in held)
            numpyro.factor("appearance_hold", -0.5 * appearance_hold(prior) * squares)
        if proportions is not None:
            numpyro.factor(
                "label_shift", label_shift(probs, proportions, source_proportions, concentration)
            )
        mixture = dist.MixtureSameFamily(
            dist.Categorical(probs), class_colour_distribution(colours, scales, brightness)
        )
        numpyro.sample("pixels", mixture.to_event(2), obs=images)


def label_shift(probs: Array, proportions, source_proportions, concentration: float) -> Array:
    """``log Dir(pi; c p) - log Dir(pi; c p_source)`` ``(B,)`` up to a constant, for the
    class shares ``pi`` of ``probs`` ``(B, H, W, K)``."""
    share = probs.mean(axis=(1, 2))
    shift = jnp.asarray(proportions) - jnp.asarray(source_proportions)
    return concentration * jnp.sum(shift * jnp.log(share + 1e-6), axis=-1)


def mutual_information(clusters: Array, probs: Array) -> Array:
    """Mutual information ``(B,)`` between hard clusters ``(B, H, W, C)`` (one-hot) and
    classes drawn from ``probs`` ``(B, H, W, K)``, pixels uniform."""
    joint = jnp.einsum("bhwc,bhwk->bck", clusters, probs) / (probs.shape[1] * probs.shape[2])
    outer = joint.sum(-1, keepdims=True) * joint.sum(-2, keepdims=True)
    return jnp.sum(joint * (jnp.log(joint + 1e-12) - jnp.log(outer + 1e-12)), axis=(-2, -1))


def clustering_model(
    prior: Any,
    clusters: Array,
    proportions: Array,
    agreement_weight: float = 1.0,
    proportion_weight: float = 1.0,
    sharpness: float = 4.0,
) -> None:
    """Graikos et al.'s constraints on label maps ``x`` ``(B, H, W, K)`` under ``prior``:
    ``agreement_weight * H * W * MI(clusters, classes)`` with a colour clustering
    ``clusters`` ``(B, H, W, C)`` (one-hot) and ``-proportion_weight * H * W *
    KL(proportions || mean class probabilities)`` with a coarse class prior
    ``proportions`` ``(K,)``. The image enters only through ``clusters``."""
    pixels = clusters.shape[1] * clusters.shape[2]
    with numpyro.plate("images", clusters.shape[0]):
        x = nd.diffusion_prior("labels", prior)
        probs = class_probabilities(x, sharpness)
        numpyro.factor("agreement", agreement_weight * pixels * mutual_information(clusters, probs))
        mean = probs.mean(axis=(1, 2))
        kl = jnp.sum(proportions * (jnp.log(proportions) - jnp.log(mean + 1e-12)), -1)
        numpyro.factor("proportions", -proportion_weight * pixels * kl)
