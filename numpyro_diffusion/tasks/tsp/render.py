"""Tours as images (Graikos et al.): cities as discs of value 1, edges as anti-aliased
lines of value 0.5, rescaled to [-1, 1]; the image of a weighted adjacency is linear in it."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import Array

__all__ = ["EdgeImages", "edge_images", "adjacency_image", "tour_adjacency", "render_tours"]

EDGE_VALUE = 0.5
CITY_VALUE = 1.0


class EdgeImages:
    """One instance's precomputed pieces at one image size.

    ``edges`` ``(E, H, W)``: the line of each city pair ``(i, j)``, ``i < j`` (value 0.5
    on the line, anti-aliased); ``cities`` ``(H, W)``: the city discs' coverage in
    ``[0, 1]``; ``pairs`` ``(E, 2)`` the city indices of each edge.
    """

    def __init__(self, edges: np.ndarray, cities: np.ndarray, pairs: np.ndarray):
        self.edges, self.cities, self.pairs = edges, cities, pairs


def _pixel_centres(size: int) -> np.ndarray:
    c = (np.arange(size) + 0.5) / size
    return np.stack(np.meshgrid(c, c, indexing="xy"), -1)  # [H, W, 2] as (x, y)


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of points ``p`` ``(..., 2)`` to the segments ``a -> b`` ``(E, 2)``: ``(E, ...)``."""
    ab = (b - a)[:, None, None]
    ap = p[None] - a[:, None, None]
    s = np.clip(np.sum(ap * ab, -1) / np.maximum(np.sum(ab * ab, -1), 1e-12), 0.0, 1.0)
    return np.linalg.norm(ap - s[..., None] * ab, axis=-1)


def _lines(coords: np.ndarray, i, j, size: int, thickness: float) -> np.ndarray:
    """Anti-aliased lines ``(E, H, W)`` of value 0.5 between cities ``i`` and ``j``."""
    dist = _segment_distance(_pixel_centres(size), coords[i], coords[j]) * size  # in pixels
    return EDGE_VALUE * np.clip(thickness / 2 + 0.5 - dist, 0.0, 1.0)


def _discs(coords: np.ndarray, size: int, radius: float) -> np.ndarray:
    """The cities' disc coverage ``(H, W)`` in ``[0, 1]``."""
    to_city = np.linalg.norm(_pixel_centres(size)[None] - coords[:, None, None], axis=-1) * size
    return np.clip(radius + 0.5 - to_city, 0.0, 1.0).max(axis=0)


def edge_images(coords, size: int = 32, thickness: float = 1.0, radius: float = 1.0) -> EdgeImages:
    """The pieces of one instance ``coords`` ``(N, 2)`` in the unit square, for images of
    ``size x size`` pixels; ``thickness`` (the lines') and ``radius`` (the discs') in pixels.
    Row 0 of the image is ``y`` near 0."""
    coords = np.asarray(coords, np.float64)
    i, j = np.triu_indices(coords.shape[0], 1)
    edges = _lines(coords, i, j, size, thickness).astype(np.float32)
    cities = _discs(coords, size, radius).astype(np.float32)
    return EdgeImages(edges, cities, np.stack([i, j], 1))


def adjacency_image(weights: Array, pieces: EdgeImages) -> Array:
    """The image ``(H, W, 1)`` in ``[-1, 1]`` of edge weights ``(E,)`` (the upper
    triangle of a symmetric adjacency): ``sum_e w_e edge_e`` with the city pixels pinned
    to 1. Linear, so differentiable, in ``weights``."""
    lines = jnp.tensordot(weights, jnp.asarray(pieces.edges), axes=1)
    cities = jnp.asarray(pieces.cities)
    image = jnp.clip(lines, 0.0, 1.0) * (1.0 - cities) + CITY_VALUE * cities
    return (2.0 * image - 1.0)[..., None]


def tour_adjacency(tour, pairs: np.ndarray) -> np.ndarray:
    """Edge weights ``(E,)``: 1 on the edges of the closed ``tour`` ``(N,)``, else 0."""
    tour = np.asarray(tour)
    n = tour.shape[0]
    a, b = tour, np.roll(tour, -1)
    index = np.full((n, n), -1)
    index[pairs[:, 0], pairs[:, 1]] = np.arange(len(pairs))
    index = np.maximum(index, index.T)
    weights = np.zeros(len(pairs), np.float32)
    weights[index[a, b]] = 1.0
    return weights


def render_tours(
    coords, tours, size: int = 32, thickness: float = 1.0, radius: float = 1.0
) -> np.ndarray:
    """Images ``(B, size, size, 1)`` of the closed ``tours`` ``(B, N)`` of ``coords``: what
    :func:`adjacency_image` gives for the tour's 0/1 adjacency, drawing its N edges only."""
    images = []
    for c, tour in zip(np.asarray(coords, np.float64), np.asarray(tours), strict=True):
        lines = _lines(c, tour, np.roll(tour, -1), size, thickness).sum(axis=0)
        cities = _discs(c, size, radius)
        image = np.clip(lines, 0.0, 1.0) * (1.0 - cities) + CITY_VALUE * cities
        images.append(2.0 * image - 1.0)
    return np.stack(images).astype(np.float32)[..., None]
