"""Swapping two classes of :func:`.posterior.appearance_model`: map and appearance together."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

__all__ = ["ClassSwap"]


@dataclass(frozen=True)
class ClassSwap:
    """A jump for :class:`numpyro_diffusion.AnnealedMCMC` on :func:`appearance_model`:
    in one image (drawn uniformly), two classes ``j != k`` (drawn uniformly) trade their
    label-map channels, colours, scales and brightness spreads.

    The pixels' likelihood is unchanged by such a swap; the map prior, the colour
    priors around ``palette`` and the label-shift factor judge it. Chains whose
    colours of two similar classes swapped before the map formed (roads named
    buildings) can leave that mode this way. The colours are ``palette + colour_scale
    * offsets``, so the offsets of a swap move by the palette's difference: a
    translation, and the swap its own inverse.

    ``palette`` is a tuple of ``K`` RGB triples (hashable: an equal ``ClassSwap``
    reuses the compiled walk).
    """

    palette: tuple[tuple[float, float, float], ...]
    colour_scale: float

    @classmethod
    def for_palette(cls, palette, colour_scale: float) -> ClassSwap:
        """From a ``(K, 3)`` array."""
        rows = np.asarray(palette, np.float64)
        return cls(tuple(tuple(float(v) for v in row) for row in rows), float(colour_scale))

    def __call__(self, rng_key: Array, values: dict) -> dict:
        labels = values["labels"]  # (B, H, W, K)
        palette = jnp.asarray(self.palette, labels.dtype)
        k = palette.shape[0]
        k_image, k_first, k_step = jax.random.split(rng_key, 3)
        image = jax.random.randint(k_image, (), 0, labels.shape[0])
        first = jax.random.randint(k_first, (), 0, k)
        second = (first + jax.random.randint(k_step, (), 1, k)) % k
        classes = jnp.arange(k)
        perm = jnp.where(classes == first, second, jnp.where(classes == second, first, classes))
        chosen = jnp.arange(labels.shape[0]) == image

        def swapped(x: Array, axis: int, shift: Array | None = None) -> Array:
            """``x`` with its class ``axis`` permuted (and ``shift`` added) in the
            chosen image only."""
            moved = jnp.take(x, perm, axis=axis)
            if shift is not None:
                moved = moved + shift
            mask = chosen.reshape((-1,) + (1,) * (x.ndim - 1))
            return jnp.where(mask, moved, x)

        out = dict(values)
        out["labels"] = swapped(labels, -1)  # (B, H, W, K)
        out["colour_offsets"] = swapped(  # (B, K, 3)
            values["colour_offsets"], 1, (palette[perm] - palette) / self.colour_scale
        )
        for name in ("scale_offsets", "brightness_offsets"):  # (B, K)
            if name in values:
                out[name] = swapped(values[name], 1)
        return out
