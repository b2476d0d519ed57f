"""``segment``: land-cover segmentation of RGB images with the label-map prior."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import init_to_median, init_to_sample

import numpyro_diffusion as nd
from numpyro_diffusion.tasks.segmentation.baselines import colour_clustering, potts_smoothing
from numpyro_diffusion.tasks.segmentation.landcover import CITIES, City
from numpyro_diffusion.tasks.segmentation.posterior import (
    BRIGHTNESS_MEDIAN,
    appearance,
    appearance_model,
    brightness_spread,
    class_probabilities,
    clustering_model,
    pixel_responsibilities,
)
from numpyro_diffusion.tasks.segmentation.start import InitToOwnColours
from numpyro_diffusion.tasks.segmentation.swap import ClassSwap
from numpyro_diffusion.tasks.shipped import load_shipped_prior

__all__ = [
    "METHODS",
    "APPEARANCE_STARTS",
    "OTHER_CITY_PRIOR_WEIGHT",
    "SegmentationResult",
    "segment",
    "check_images",
    "load_segmentation_prior",
    "entropy",
]

METHODS = ("annealed", "plug_and_play", "constraints", "clustering", "potts")
APPEARANCE_STARTS = ("palette", "prior", "own_cell")  # where annealed chains start the colours
OTHER_CITY_PRIOR_WEIGHT = 0.25  # the label-map prior's power in a city it was not trained on


class SegmentationResult(NamedTuple):
    labels: np.ndarray  # [B, H, W] the most probable class of each pixel
    probs: np.ndarray  # [B, H, W, K] per-pixel class probabilities
    colours: np.ndarray  # [B, K, 3] the class colours inferred (posterior mean or fit)
    label_draws: np.ndarray | None  # [S, B, H, W] posterior draws (annealed only)
    # [S, B, H, W, K] each draw's class probabilities, whose mean is ``probs`` (annealed)
    draw_probs: np.ndarray | None = None

    @property
    def entropy(self) -> np.ndarray:
        """Per-pixel entropy of ``probs`` in nats, ``(B, H, W)``."""
        return entropy(self.probs)


def entropy(probs) -> np.ndarray:
    probs = np.asarray(probs)
    return -np.sum(probs * np.log(np.clip(probs, 1e-12, 1.0)), axis=-1)


def load_segmentation_prior(city: str = "A", size: int = 32) -> nd.DiffusionModel:
    """The shipped label-map prior trained on ``city``'s maps at ``size`` pixels."""
    return load_shipped_prior(
        f"landcover_{city}_{size}px",
        "landcover",
        f"land-cover prior for city {city!r} at {size} px",
        "scripts/train_segmentation_prior.py",
    )


def check_images(images, size: tuple[int, int] | None = None) -> np.ndarray:
    """``images`` as ``(B, H, W, 3)`` float32; raises on a wrong shape, NaN and values
    outside [0, 1]."""
    images = np.asarray(images, np.float32)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"images must have shape (B, H, W, 3) or (H, W, 3) (RGB, channels last), got "
            f"{images.shape}."
        )
    if size is not None and images.shape[1:3] != tuple(size):
        raise ValueError(
            f"images are {images.shape[1]}x{images.shape[2]} but the prior's label maps are "
            f"{size[0]}x{size[1]}; resize the images or pass a prior of their size."
        )
    bad = int(np.sum(~np.isfinite(images)))
    if bad:
        raise ValueError(f"images hold {bad} NaN or infinite values; give finite RGB values.")
    if images.min() < 0.0 or images.max() > 1.0:
        raise ValueError(
            f"image values must lie in [0, 1], got [{images.min():.3g}, {images.max():.3g}]; "
            "divide 8-bit images by 255."
        )
    return images


def segment(
    rng_key: jax.Array,
    images,
    *,
    city: City | None = None,
    method: str = "annealed",
    prior: Any = None,
    num_samples: int = 16,
    levels: int = 50,
    steps_per_level: int = 6,
    kernel: str = "uhmc",
    images_per_run: int | None = None,
    prior_city: City | None = None,
    num_steps: int = 300,
    colour_scale: float = 0.05,
    sharpness: float = 4.0,
    coupling: float = 1.0,
    brightness: bool = False,
    hold_appearance: bool = False,
    swap_classes: bool = False,
    prior_weight: float | None = None,
    appearance_start: str = "own_cell",
    progress_bar: bool = False,
    chain_method: str = "vectorized",
) -> SegmentationResult:
    """Segment RGB ``images`` ``(B, H, W, 3)`` in [0, 1] into the prior's classes.

    ``city`` supplies only the weak priors: class colours ``Normal(city.palette,
    colour_scale)`` per image (the images' true colours may differ) and the coarse
    class proportions (for ``"constraints"``, and to correct the prior for label shift
    from ``prior_city``, the city its maps came from, by default A); ``None`` takes
    city A. Every method models a class's pixel colours as its colour plus noise of a
    per-class scale in each channel and, with ``brightness=True``, a per-class shift
    common to the three channels (:class:`.posterior.BrightnessNormal`: texture and
    illumination make a class lighter or darker more than they change its hue).

    ``prior_weight`` tempers the label-map prior to ``p(x)^prior_weight`` (a power
    prior: maps learned in ``prior_city`` are evidence about ``city``'s, discounted);
    ``None`` is 1 when ``city`` is ``prior_city`` (same name and proportions) and
    :data:`OTHER_CITY_PRIOR_WEIGHT` otherwise. Methods:

    - ``"annealed"``: annealed MCMC (``kernel``, ``levels`` x ``steps_per_level``; MALA
      and HMC on a score-only prior use the line-integral energy) on
      :func:`appearance_model` with ``num_samples`` chains per image, each starting
      with the map from noise and the class colours at ``city``'s palette
      (``appearance_start="palette"``, NumPyro's ``init_to_median``), drawn from
      their priors around it (``"prior"``, ``init_to_sample``: the chains can then
      disagree about a patch between two close classes, and also start two close
      classes' colours swapped and keep them so), or drawn from those priors with each
      class's colour nearer its own palette entry than any other (``"own_cell"``, the
      default; :class:`.start.InitToOwnColours`: the disagreement without the swaps);
      ``probs`` is the posterior mean of each pixel's class (its responsibility under
      each draw).
      ``hold_appearance=True`` holds the appearance near its prior while the map is
      noise (:func:`.posterior.appearance_hold`; the last level's target is unchanged):
      the chains agree more, in accuracy a little better, in calibration not always.
      ``swap_classes=True`` lets each chain propose, at the middle levels, to swap two
      classes' map channels and appearance in one image of its run
      (:class:`.swap.ClassSwap`, the sampler's ``jump``), judged by the map prior and
      the colour priors; with many images in a run each image is proposed less often.
      ``images_per_run`` images share one sampler run (one batch for the network):
      exact for the unadjusted kernels, whose moves act on each image's coordinates
      alone; under MALA and HMC the images of a run share each chain's adapted step
      size and accept or reject together. ``None``: every image in one run for
      ``"ula"`` and ``"uhmc"`` on an accelerator, one image a run otherwise (on a CPU
      a larger batch of U-Net chains costs more per image: it leaves the cache).
    - ``"plug_and_play"``: Graikos et al.'s point estimate (``num_steps`` Adam steps) of
      the same model; ``probs`` are the responsibilities at that point.
    - ``"constraints"``: the paper's variant, plug-and-play on :func:`clustering_model`
      (agreement with a k-means colour clustering, the city's class proportions).
    - ``"clustering"`` and ``"potts"``: the colour-only baselines (Gaussian mixture with
      the same colour priors; with Potts mean-field smoothing of ``coupling``).

    ``chain_method="sharded"`` splits each image's chains (``"annealed"``) or the batch
    of images (the point estimates) over every device of every process.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}.")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
    if prior_weight is not None and not prior_weight > 0:
        raise ValueError(
            f"prior_weight must be > 0 (1 for the prior as trained), got {prior_weight}."
        )
    if appearance_start not in APPEARANCE_STARTS:
        raise ValueError(
            f"unknown appearance_start {appearance_start!r}; expected one of {APPEARANCE_STARTS}."
        )
    if images_per_run is not None and images_per_run < 1:
        raise ValueError(f"images_per_run must be >= 1 (or None), got {images_per_run}.")
    prior = (
        load_segmentation_prior()
        if prior is None and method not in ("clustering", "potts")
        else prior
    )
    city = CITIES["A"] if city is None else city
    prior_city = CITIES["A"] if prior_city is None else prior_city
    palette = np.asarray(city.palette, np.float32)
    if prior is not None:
        *size, k = prior.event_shape
        if palette.shape != (k, 3):
            raise ValueError(
                f"the prior's label maps have {k} classes but city {city.name!r} has a palette "
                f"of shape {palette.shape}; give a City with {k} colours (K, 3)."
            )
    else:
        size, k = None, palette.shape[0]
    images = check_images(images, size)
    if method in ("clustering", "potts"):
        probs, fit = colour_clustering(images, palette, colour_scale, brightness=brightness)
        if method == "potts":
            probs = potts_smoothing(fit, coupling)
        return SegmentationResult(probs.argmax(-1), probs.astype(np.float32), fit.colours, None)
    model_kwargs = _model_kwargs(
        city, prior_city, colour_scale, sharpness, brightness, prior_weight
    )
    if method == "annealed":
        return _annealed(
            rng_key,
            images,
            prior,
            palette,
            num_samples,
            levels,
            steps_per_level,
            kernel,
            images_per_run,
            progress_bar,
            model_kwargs,
            chain_method,
            hold_appearance,
            swap_classes,
            appearance_start,
        )
    return _point_estimate(
        rng_key, images, prior, city, method, num_steps, model_kwargs, chain_method
    )


def _model_kwargs(
    city: City,
    prior_city: City,
    colour_scale: float,
    sharpness: float,
    brightness: bool,
    prior_weight: float | None = None,
) -> dict:
    """Keyword arguments of :func:`appearance_model`: the label-shift correction only
    where the class proportions differ from the prior's city, the prior discounted
    (``prior_weight=None``) only in another city."""
    target = np.asarray(city.proportions, np.float32)
    source = np.asarray(prior_city.proportions, np.float32)
    if target.shape != source.shape:
        raise ValueError(
            f"city {city.name!r} has {target.size} class proportions, the prior's city "
            f"{prior_city.name!r} {source.size}; give cities with the same classes."
        )
    same_proportions = bool(np.allclose(target, source))
    same_city = city.name == prior_city.name and same_proportions
    if prior_weight is None:
        prior_weight = 1.0 if same_city else OTHER_CITY_PRIOR_WEIGHT
    kwargs = dict(
        colour_scale=colour_scale,
        sharpness=sharpness,
        brightness_median=BRIGHTNESS_MEDIAN if brightness else None,
        prior_weight=float(prior_weight),
    )
    if not same_proportions:
        kwargs.update(
            proportions=target, source_proportions=source, concentration=float(city.concentration)
        )
    return kwargs


def _annealed(
    key,
    images,
    prior,
    palette,
    num_samples,
    levels,
    steps_per_level,
    kernel,
    images_per_run,
    progress_bar,
    model_kwargs,
    chain_method,
    hold_appearance,
    swap_classes,
    appearance_start,
) -> SegmentationResult:
    adjusted = kernel in ("mala", "hmc")
    corrected = adjusted and prior.parameterization != "energy"
    if images_per_run is None:
        images_per_run = 1 if adjusted or jax.default_backend() == "cpu" else len(images)
    sampler = nd.AnnealedMCMC(
        appearance_model,
        kernel,
        num_samples,
        steps_per_level,
        levels=levels,
        progress_bar=progress_bar,
        chain_method=chain_method,
        init_strategy=_start(appearance_start),
        jump=ClassSwap.for_palette(palette, model_kwargs["colour_scale"]) if swap_classes else None,
        **({"energy": "line_integral"} if corrected else {}),
    )
    draw_probs, colours = [], []
    for first in range(0, len(images), images_per_run):
        run = images[first : first + images_per_run]
        sampler.run(
            jax.random.fold_in(key, first),
            prior,
            jnp.asarray(run),
            palette,
            hold_appearance=hold_appearance,
            **model_kwargs,
        )
        r, c = _responsibilities(sampler.get_samples(), run, palette, model_kwargs)
        draw_probs.append(np.asarray(r))  # (S, b, H, W, K)
        colours.append(np.asarray(c.mean(0)))
    draw_probs = np.concatenate(draw_probs, 1)
    probs = draw_probs.mean(0)
    return SegmentationResult(
        probs.argmax(-1), probs, np.concatenate(colours), draw_probs.argmax(-1), draw_probs
    )


def _start(appearance_start: str):
    """The NumPyro initialisation strategy of ``appearance_start``."""
    if appearance_start == "own_cell":
        return InitToOwnColours()
    return init_to_median if appearance_start == "palette" else init_to_sample


def _responsibilities(values, images, palette, model_kwargs):
    """Each pixel's class posterior ``(..., B, H, W, K)`` given draws ``(S, B, ...)`` (or
    an estimate ``(B, ...)``) of the maps and colours of ``images`` ``(B, H, W, 3)``,
    and those colours ``(..., B, K, 3)``."""
    colours, scales = appearance(
        values["colour_offsets"], values["scale_offsets"], palette, model_kwargs["colour_scale"]
    )
    brightness = None
    if "brightness_offsets" in values:
        brightness = brightness_spread(
            values["brightness_offsets"], model_kwargs["brightness_median"]
        )
    probs = class_probabilities(values["labels"], model_kwargs["sharpness"])
    images = jnp.asarray(images)
    if probs.ndim == 5:  # draws
        axes = (0, None, 0, 0, None if brightness is None else 0)
        return jax.vmap(pixel_responsibilities, axes)(
            probs, images, colours, scales, brightness
        ), colours
    return pixel_responsibilities(probs, images, colours, scales, brightness), colours


def _point_estimate(key, images, prior, city, method, num_steps, model_kwargs, chain_method):
    """Every image's point estimate in one compiled program (the images are the batch)."""
    palette = np.asarray(city.palette, np.float32)
    batch = jnp.asarray(images[:, None])  # (B, 1, H, W, 3): one problem per image
    if method == "plug_and_play":
        result = nd.plug_and_play(
            appearance_model,
            key,
            prior,
            batch,
            palette,
            num_steps=num_steps,
            in_axes=(None, 0, None),
            chain_method=chain_method,
            **model_kwargs,
        )
        params = jax.tree.map(lambda x: x[:, 0], result.params)  # (B, 1, ...) -> (B, ...)
        r, c = _responsibilities(params, images, palette, model_kwargs)
        probs, colours = np.asarray(r), np.asarray(c)
    else:
        clusters = np.stack(
            [_kmeans_clusters(image, palette.shape[0], seed=b) for b, image in enumerate(images)]
        )
        result = nd.plug_and_play(
            clustering_model,
            key,
            prior,
            jnp.asarray(clusters[:, None]),
            jnp.asarray(city.proportions, jnp.float32),
            sharpness=model_kwargs["sharpness"],
            num_steps=num_steps,
            in_axes=(None, 0, None),
            chain_method=chain_method,
        )
        r = class_probabilities(result.params["labels"][:, 0], model_kwargs["sharpness"])
        probs = np.asarray(r)
        colours = np.stack([_class_means(image, p) for image, p in zip(images, probs, strict=True)])
    return SegmentationResult(probs.argmax(-1), probs, colours, None)


def _kmeans_clusters(image: np.ndarray, num_clusters: int, seed: int) -> np.ndarray:
    """One-hot k-means clusters ``(H, W, C)`` of an image's pixel colours."""
    from sklearn.cluster import KMeans

    pixels = image.reshape(-1, 3)
    assignment = KMeans(num_clusters, n_init=4, random_state=seed).fit_predict(pixels)
    return np.eye(num_clusters, dtype=np.float32)[assignment].reshape(*image.shape[:2], -1)


def _class_means(image: np.ndarray, probs: np.ndarray) -> np.ndarray:
    weights = probs.reshape(-1, probs.shape[-1])
    return (weights.T @ image.reshape(-1, 3)) / np.maximum(weights.sum(0)[:, None], 1e-9)
