"""Synthetic land cover: label maps with real structure, and cities that differ.

A map is painted in layers: a connected road network of straight roads (each new road
crosses one already drawn), lakes and a river, buildings as rectangles beside the
roads, tree clumps and field patches from smooth noise, grass elsewhere. Each layer's
area is drawn per map around the city's mean class proportions (a Dirichlet), so the
city's ``proportions`` are what its maps cover on average.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np
from scipy import ndimage

__all__ = ["CLASSES", "City", "CITIES", "generate_maps", "numpy_rng"]

CLASSES = ("water", "road", "building", "trees", "grass", "field")
WATER, ROAD, BUILDING, TREES, GRASS, FIELD = range(len(CLASSES))


class City(NamedTuple):
    """Layout and appearance of one city; lengths are fractions of the map's side.

    ``palette`` ``(K, 3)``: mean colour of each class in [0, 1]; ``proportions``
    ``(K,)``: mean class fractions of its maps; ``texture`` ``(K,)``: per-class
    standard deviation of the local brightness texture.
    """

    name: str
    palette: np.ndarray
    proportions: np.ndarray
    concentration: float = 40.0  # of the per-map Dirichlet around ``proportions``
    road_width: float = 0.045
    road_angle_spread: float = 0.15  # std (radians) of a road's turn from a right angle
    river_probability: float = 0.3
    river_width: float = 0.07
    building_size: tuple[float, float] = (0.06, 0.14)
    building_setback: float = 0.04
    lake_scale: float = 0.12  # smoothing length of the lake noise
    tree_scale: float = 0.05
    field_scale: float = 0.15
    texture: np.ndarray = np.full(len(CLASSES), 0.03)
    colour_jitter: float = 0.03  # per-image shift of every class colour
    shading: float = 0.06  # amplitude of a smooth illumination field
    noise: float = 0.03  # per-pixel sensor noise


CITIES: dict[str, City] = {
    # suburban: a dense road grid, many buildings, gardens and trees, little water
    "A": City(
        name="A",
        palette=np.array(
            [
                [0.16, 0.30, 0.45],  # water
                [0.55, 0.55, 0.55],  # road
                [0.78, 0.42, 0.33],  # building
                [0.13, 0.36, 0.15],  # trees
                [0.42, 0.62, 0.30],  # grass
                [0.72, 0.64, 0.42],  # field
            ]
        ),
        proportions=np.array([0.07, 0.14, 0.16, 0.20, 0.33, 0.10]),
        texture=np.array([0.01, 0.02, 0.04, 0.05, 0.03, 0.03]),
        noise=0.04,
    ),
    # rural river town: sparse roads at odd angles, fields and water, few buildings
    "B": City(
        name="B",
        palette=np.array(
            [
                [0.17, 0.27, 0.28],
                [0.47, 0.46, 0.49],
                [0.56, 0.53, 0.52],
                [0.18, 0.30, 0.15],
                [0.50, 0.59, 0.33],
                [0.60, 0.54, 0.37],
            ]
        ),
        proportions=np.array([0.14, 0.09, 0.07, 0.22, 0.22, 0.26]),
        road_width=0.04,
        road_angle_spread=0.35,
        river_probability=0.6,
        building_size=(0.05, 0.10),
        lake_scale=0.15,
        field_scale=0.2,
        texture=np.array([0.02, 0.03, 0.04, 0.06, 0.04, 0.05]),
        colour_jitter=0.04,
        shading=0.08,
        noise=0.05,
    ),
}


def numpy_rng(rng_key: jax.Array) -> np.random.Generator:
    """A NumPy generator seeded by a JAX key (generation and rendering run on the host)."""
    data = (
        jax.random.key_data(rng_key)
        if jax.dtypes.issubdtype(rng_key.dtype, jax.dtypes.prng_key)
        else rng_key
    )
    return np.random.default_rng(np.asarray(data, np.uint32).ravel().tolist())


def _smooth_noise(rng: np.random.Generator, size: int, scale: float) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal((size, size)), scale * size, mode="wrap")
    return field / (field.std() + 1e-12)


def _fill_quantile(labels, free, score, fraction, cls) -> None:
    """Paint class ``cls`` on the ``fraction`` of all pixels where ``score`` is highest
    among the ``free`` ones."""
    count = int(round(fraction * labels.size))
    candidates = np.flatnonzero(free.ravel())
    if count <= 0 or candidates.size == 0:
        return
    top = candidates[np.argsort(-score.ravel()[candidates])[:count]]
    labels.ravel()[top] = cls


def _roads(rng, size, city, target, grid):
    mask = np.zeros((size, size), bool)
    half = 0.5 * max(city.road_width * size, 0.75)
    angle = rng.uniform(0, np.pi)
    anchor = rng.uniform(0.2, 0.8, size=2) * size
    lines = []
    while True:
        normal = np.array([np.cos(angle), np.sin(angle)])
        grown = mask | (np.abs((grid - anchor) @ normal) <= half)
        if lines and grown.mean() - target > target - mask.mean():
            return mask  # the road would overshoot the target by more than it lacks
        mask = grown
        lines.append(angle)
        if mask.mean() >= target:
            return mask
        # the next road crosses a random point of the network, about at a right angle
        on_road = np.argwhere(mask)
        anchor = on_road[rng.integers(len(on_road))][::-1] + 0.5
        angle = lines[rng.integers(len(lines))] + np.pi / 2 + rng.normal(0, city.road_angle_spread)


def _river(rng, size, city, grid):
    angle = rng.uniform(0, np.pi)
    centred = grid / size - 0.5
    along = centred @ np.array([np.cos(angle), np.sin(angle)])
    across = centred @ np.array([-np.sin(angle), np.cos(angle)])
    wiggle = 0.08 * np.sin(2 * np.pi * rng.uniform(0.5, 1.5) * along + rng.uniform(0, 2 * np.pi))
    return np.abs(across - rng.uniform(-0.3, 0.3) - wiggle) <= city.river_width / 2


def _buildings(rng, labels, size, city, target, road):
    setback = ndimage.distance_transform_edt(~road) / size
    near = np.argwhere((setback > 0) & (setback <= city.building_setback + city.building_size[1]))
    count, goal = 0, int(round(target * labels.size))
    lo, hi = (max(1, int(round(s * size))) for s in city.building_size)
    for _ in range(40 * max(goal, 1)):
        if count >= goal or len(near) == 0:
            return
        i, j = near[rng.integers(len(near))]
        h, w = rng.integers(lo, hi + 1, size=2)
        block = labels[i : i + h, j : j + w]
        if block.shape == (h, w) and np.all(block == GRASS):
            block[...] = BUILDING
            count += h * w


def _one_map(rng: np.random.Generator, city: City, size: int) -> np.ndarray:
    share = rng.dirichlet(city.concentration * np.asarray(city.proportions))
    labels = np.full((size, size), GRASS, np.int32)
    grid = np.stack(np.meshgrid(np.arange(size), np.arange(size)), -1) + 0.5  # (x, y)
    road = _roads(rng, size, city, share[ROAD], grid)
    labels[road] = ROAD
    if rng.uniform() < city.river_probability:
        river = _river(rng, size, city, grid) & ~road
        labels[river] = WATER
    lakes = share[WATER] - (labels == WATER).mean()
    _fill_quantile(labels, labels == GRASS, _smooth_noise(rng, size, city.lake_scale), lakes, WATER)
    _buildings(rng, labels, size, city, share[BUILDING], road)
    for cls, scale in ((TREES, city.tree_scale), (FIELD, city.field_scale)):
        noise = _smooth_noise(rng, size, scale)
        _fill_quantile(labels, labels == GRASS, noise, share[cls], cls)
    return labels


def generate_maps(rng_key: jax.Array, num_maps: int, city: City, size: int = 32) -> np.ndarray:
    """``(num_maps, size, size)`` int32 label maps of ``city`` (classes :data:`CLASSES`)."""
    if num_maps < 0 or size < 8:
        raise ValueError(f"need num_maps >= 0 and size >= 8, got {num_maps} and {size}.")
    rng = numpy_rng(rng_key)
    return np.stack([_one_map(rng, city, size) for _ in range(num_maps)]).reshape(
        num_maps, size, size
    )
