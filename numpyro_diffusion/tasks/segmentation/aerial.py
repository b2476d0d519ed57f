"""Aerial-looking RGB images of label maps: class colours, texture, shading, noise."""

from __future__ import annotations

import jax
import numpy as np
from scipy import ndimage

from numpyro_diffusion.tasks.segmentation.landcover import City, numpy_rng

__all__ = ["render", "one_hot_maps"]


def render(rng_key: jax.Array, labels, city: City) -> np.ndarray:
    """``(B, H, W, 3)`` images in [0, 1] of label maps ``labels`` ``(B, H, W)``.

    Each pixel is its class's colour in ``city.palette``, shifted per image by
    ``colour_jitter``, plus a per-class brightness texture (smooth at one pixel),
    a smooth illumination field of amplitude ``shading`` and sensor noise.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must have shape (B, H, W), got {labels.shape}.")
    palette = np.asarray(city.palette, np.float64)
    k = palette.shape[0]
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        raise ValueError(f"labels must lie in [0, {k - 1}] for a palette of {k} colours.")
    rng = numpy_rng(rng_key)
    b, h, w = labels.shape
    colours = palette[None] + city.colour_jitter * rng.standard_normal((b, k, 3))
    image = np.take_along_axis(colours[:, None], labels.reshape(b, -1, 1, 1), axis=2)
    image = image.reshape(b, h, w, 3)
    texture = ndimage.gaussian_filter(rng.standard_normal((b, h, w)), (0, 0.7, 0.7))
    texture /= texture.std(axis=(1, 2), keepdims=True) + 1e-12
    image += (np.asarray(city.texture)[labels] * texture)[..., None]
    light = ndimage.gaussian_filter(rng.standard_normal((b, h, w)), (0, h / 4, w / 4), mode="wrap")
    light /= np.abs(light).max(axis=(1, 2), keepdims=True) + 1e-12
    image *= (1.0 + city.shading * light)[..., None]
    image += city.noise * rng.standard_normal(image.shape)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def one_hot_maps(labels, num_classes: int) -> np.ndarray:
    """``(B, H, W, K)`` one-hot channels scaled to [-1, 1]: the prior's data space."""
    return 2.0 * np.eye(num_classes, dtype=np.float32)[np.asarray(labels)] - 1.0
