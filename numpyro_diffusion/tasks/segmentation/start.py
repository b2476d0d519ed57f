"""Where annealed chains start the class colours of :func:`.posterior.appearance_model`."""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
from jax import Array
from numpyro.infer import init_to_sample

__all__ = ["InitToOwnColours"]

CANDIDATES = 32  # prior draws per class and image; the first in the class's own cell is kept


@dataclass(frozen=True)
class InitToOwnColours:
    """A NumPyro initialisation strategy: every latent drawn from its prior
    (``init_to_sample``), except that each class's colour is drawn from its prior
    ``Normal(palette_k, colour_scale)`` restricted to the colours nearer ``palette_k``
    than any other palette entry (its Voronoi cell).

    The palette is what names the classes; a chain whose road colour starts nearer the
    building entry starts with those two classes swapped, and keeps that labelling
    once the map forms. Restricted to their own cells the draws still spread over the
    colour prior (the chains disagree where the pixels leave the class of a patch
    open) but none starts a swap: the identifiability constraint of a mixture model
    (an ordering of its components), with the palette as the order.

    Each class keeps the first of :data:`CANDIDATES` prior draws that falls in its
    cell, or its palette entry if none does. The palette ``(K, 3)`` and the colour
    scale are the site's ``infer["palette"]`` and ``infer["colour_scale"]``
    (:func:`.posterior.appearance_model` declares them): arguments of the model, not
    constants of the strategy, so one compiled walk serves every palette.
    """

    site: str = "colour_offsets"

    def __call__(self, site: dict | None = None):
        if site is None:
            return self
        if site["type"] != "sample" or site["is_observed"] or site["name"] != self.site:
            return init_to_sample(site)
        infer = site.get("infer") or {}
        if "palette" not in infer or "colour_scale" not in infer:
            raise ValueError(
                f"InitToOwnColours needs the palette and colour scale of site {self.site!r}: "
                "declare them as numpyro.sample(..., infer={'palette': (K, 3) array, "
                "'colour_scale': float}), as posterior.appearance_model does."
            )
        sample_shape = tuple(site["kwargs"].get("sample_shape") or ())
        offsets = site["fn"](
            rng_key=site["kwargs"]["rng_key"], sample_shape=(CANDIDATES, *sample_shape)
        )  # (N, ..., B, K, 3)
        palette = jnp.asarray(infer["palette"], offsets.dtype)
        return own_cell_draw(offsets, palette, infer["colour_scale"])


def own_cell_draw(offsets: Array, palette: Array, colour_scale: float | Array) -> Array:
    """Per class, the first of the candidate offsets ``(N, ..., K, 3)`` whose colour
    ``palette + colour_scale * offset`` is nearest its own entry of ``palette``
    ``(K, 3)``, or zero; ``(..., K, 3)``."""
    colours = palette + colour_scale * offsets
    distances = jnp.sum((colours[..., :, None, :] - palette) ** 2, -1)  # (N, ..., K, K)
    k = palette.shape[0]
    own = jnp.argmin(distances, -1) == jnp.arange(k)  # (N, ..., K)
    first = jnp.argmax(own, axis=0)  # (..., K): the first candidate in the cell
    chosen = jnp.take_along_axis(offsets, first[None, ..., None], axis=0)[0]
    return jnp.where(jnp.any(own, axis=0)[..., None], chosen, 0.0)
