"""The 2D densities of Du et al.'s composition experiments, with exact log-densities.

Each :class:`Toy2D` draws training data and evaluates its normalised log-density, so
a composed density (a product, mixture or negation of them) can be normalised on a
grid and samples scored by their log-likelihood under it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.scipy.special import logsumexp

__all__ = [
    "Toy2D",
    "ring",
    "bar",
    "box",
    "GridDensity",
    "grid_density",
]

# Densities whose support is a box get this much mass from a wide Gaussian, so that
# every sample has a finite log-likelihood (Sjoberg et al. use 1 % as well).
OUTER_MASS = 0.01
OUTER_STD = 1.1


class Toy2D(NamedTuple):
    """A 2D distribution: ``sample(rng_key, n) -> (n, 2)``, ``log_prob(x (n, 2)) -> (n,)``."""

    name: str
    sample: Callable[[Array, int], Array]
    log_prob: Callable[[Array], Array]


def ring(radius: float = 0.5, std: float = 0.03, num_modes: int = 8) -> Toy2D:
    """``num_modes`` equal Gaussians of ``std`` evenly spaced on a circle of ``radius``."""
    angles = 2 * np.pi * np.arange(num_modes) / num_modes
    means = jnp.asarray(radius * np.stack([np.cos(angles), np.sin(angles)], 1), jnp.float32)

    def sample(rng_key, n):
        k1, k2 = jax.random.split(rng_key)
        idx = jax.random.randint(k1, (n,), 0, num_modes)
        return means[idx] + std * jax.random.normal(k2, (n, 2))

    def log_prob(x):
        sq = jnp.sum((x[:, None] - means) ** 2, -1)
        return logsumexp(-0.5 * sq / std**2, axis=1) - np.log(num_modes * 2 * np.pi * std**2)

    return Toy2D(f"ring(r={radius}, std={std})", sample, log_prob)


def _outer_log_prob(x):
    return -0.5 * jnp.sum(x**2, -1) / OUTER_STD**2 - np.log(2 * np.pi * OUTER_STD**2)


def box(center: Sequence[float] = (0.0, 0.0), half_widths: Sequence[float] = (0.2, 1.0)) -> Toy2D:
    """Uniform on an axis-aligned rectangle; the log-density gives 1 % to a wide Gaussian."""
    c = jnp.asarray(center, jnp.float32)
    h = jnp.asarray(half_widths, jnp.float32)
    log_area = float(np.log(np.prod(2 * np.asarray(half_widths))))

    def sample(rng_key, n):
        return c + h * jax.random.uniform(rng_key, (n, 2), minval=-1.0, maxval=1.0)

    def log_prob(x):
        inside = jnp.all(jnp.abs(x - c) <= h, axis=-1)
        log_in = jnp.where(inside, np.log1p(-OUTER_MASS) - log_area, -jnp.inf)
        return jnp.logaddexp(log_in, np.log(OUTER_MASS) + _outer_log_prob(x))

    return Toy2D(f"box(center={tuple(center)}, half={tuple(half_widths)})", sample, log_prob)


def bar(center_x: float = 0.0, half_width: float = 0.2, half_height: float = 1.0) -> Toy2D:
    """A vertical bar: uniform on ``|x - center_x| <= half_width``, ``|y| <= half_height``."""
    return box((center_x, 0.0), (half_width, half_height))


class GridDensity(NamedTuple):
    """A 2D density normalised on a grid: ``log_prob(x (n, 2)) -> (n,)`` and the grid."""

    log_prob: Callable[[Array], Array]
    xs: np.ndarray  # [G] grid coordinates along each axis
    log_density: np.ndarray  # [G, G] normalised log-density on the grid

    def sample(self, rng_key: Array, n: int) -> Array:
        """Reference draws ``(n, 2)``: a grid cell by its mass, then uniform inside it."""
        k_cell, k_jitter = jax.random.split(rng_key)
        p = np.exp(self.log_density.ravel() - self.log_density.max())
        cdf = jnp.asarray(np.cumsum(p) / p.sum())
        cell = jnp.searchsorted(cdf, jax.random.uniform(k_cell, (n,)))
        cell = jnp.minimum(cell, cdf.shape[0] - 1)
        i, j = jnp.divmod(cell, self.log_density.shape[1])
        h = self.xs[1] - self.xs[0]
        centre = jnp.stack([jnp.asarray(self.xs)[i], jnp.asarray(self.xs)[j]], 1)
        return centre + h * jax.random.uniform(k_jitter, (n, 2), minval=-0.5, maxval=0.5)


def grid_density(
    unnormalised_log_prob: Callable[[Array], Array], lim: float = 1.6, size: int = 401
) -> GridDensity:
    """Normalise an unnormalised 2D log-density by quadrature on ``[-lim, lim]^2``."""
    xs = np.linspace(-lim, lim, size)
    xx, yy = np.meshgrid(xs, xs, indexing="ij")
    pts = jnp.asarray(np.stack([xx.ravel(), yy.ravel()], 1), jnp.float32)
    lp = np.asarray(unnormalised_log_prob(pts), np.float64)
    cell = (xs[1] - xs[0]) ** 2
    log_z = np.logaddexp.reduce(lp) + np.log(cell)

    def log_prob(x):
        return unnormalised_log_prob(jnp.asarray(x, jnp.float32)) - log_z

    return GridDensity(log_prob, xs, (lp - log_z).reshape(size, size))
