"""TSP instances: uniform cities in the unit square, tour lengths, LKH-3 references."""

from __future__ import annotations

import warnings

import jax
import numpy as np
from jax import Array

__all__ = ["random_instances", "check_coords", "tour_length", "reference_tours", "gap"]


def random_instances(rng_key: Array, num_instances: int, num_cities: int) -> np.ndarray:
    """``(num_instances, num_cities, 2)`` cities uniform in the unit square."""
    coords = jax.random.uniform(rng_key, (num_instances, num_cities, 2))
    return np.asarray(coords, np.float64)


def check_coords(coords, expected_cities: int | None = None) -> np.ndarray:
    """``coords`` as a ``(B, N, 2)`` float array; raises on a wrong shape, NaN or inf and
    points outside the unit square; warns when ``N`` is not ``expected_cities``."""
    coords = np.asarray(coords, np.float64)
    if coords.ndim == 2:
        coords = coords[None]
    if coords.ndim != 3 or coords.shape[-1] != 2 or coords.shape[1] < 4:
        raise ValueError(
            f"coords must have shape (B, N, 2) or (N, 2) with N >= 4 cities, got {coords.shape}."
        )
    if not np.all(np.isfinite(coords)):
        raise ValueError(
            f"coords hold {int(np.sum(~np.isfinite(coords)))} NaN or infinite values; every "
            "city needs two finite coordinates."
        )
    if coords.min() < 0.0 or coords.max() > 1.0:
        raise ValueError(
            f"coords must lie in the unit square [0, 1]^2 (the prior's images cover it); got "
            f"values in [{coords.min():.3g}, {coords.max():.3g}]. Rescale them, for example "
            "(coords - min) / (max - min) with one scale for both axes."
        )
    if expected_cities is not None and coords.shape[1] != expected_cities:
        warnings.warn(
            f"the prior was trained on tours of {expected_cities} cities, these instances have "
            f"{coords.shape[1]}: its images look different, so expect larger gaps.",
            stacklevel=3,
        )
    return coords


def tour_length(coords, tours) -> np.ndarray:
    """Closed-tour lengths ``(B,)`` of permutations ``tours`` ``(B, N)`` of ``coords``."""
    coords, tours = np.asarray(coords), np.asarray(tours)
    ordered = np.take_along_axis(coords, tours[..., None], axis=-2)
    steps = ordered - np.roll(ordered, -1, axis=-2)
    return np.sqrt(np.sum(steps**2, axis=-1)).sum(axis=-1)


def gap(lengths, reference_lengths) -> np.ndarray:
    """Optimality gap ``length / reference - 1`` per instance."""
    return np.asarray(lengths) / np.asarray(reference_lengths) - 1.0


def reference_tours(coords, runs: int = 10, precision: float = 1e6) -> np.ndarray:
    """LKH-3 tours ``(B, N)`` through ``elkai`` (the ``tsp`` extra), distances scaled
    to integers by ``precision``."""
    try:
        import elkai
    except ImportError as error:
        raise ImportError(
            "reference tours need LKH-3 through elkai: pip install 'numpyro-diffusion[tsp]' "
            "(or pip install elkai)."
        ) from error
    coords = check_coords(coords)
    tours = []
    for c in coords:
        d = np.sqrt(np.sum((c[:, None] - c[None]) ** 2, axis=-1))
        tour = elkai.DistanceMatrix(np.rint(d * precision).astype(int).tolist()).solve_tsp(
            runs=runs
        )
        tours.append(tour[:-1])  # elkai closes the tour on city 0
    return np.asarray(tours, np.int64)
