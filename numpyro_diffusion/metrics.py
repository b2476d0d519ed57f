"""Sample-quality metrics for low-dimensional samples: MMD and the 2-Wasserstein distance."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

__all__ = ["mmd", "wasserstein2"]


def mmd(x: ArrayLike, y: ArrayLike, bandwidth: float = 0.1) -> Array:
    """Unbiased squared maximum mean discrepancy with a Gaussian kernel.

    ``x`` ``(n, d)`` and ``y`` ``(m, d)``; zero in expectation when both come from one
    distribution (so it can be slightly negative).
    """
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)

    def gram(a, b):
        sq = jnp.sum((a[:, None] - b[None]) ** 2, -1)
        return jnp.exp(-0.5 * sq / bandwidth**2)

    n, m = x.shape[0], y.shape[0]
    kxx, kyy, kxy = gram(x, x), gram(y, y), gram(x, y)
    term_x = (jnp.sum(kxx) - jnp.trace(kxx)) / (n * (n - 1))
    term_y = (jnp.sum(kyy) - jnp.trace(kyy)) / (m * (m - 1))
    return term_x + term_y - 2 * jnp.mean(kxy)


def wasserstein2(x: ArrayLike, y: ArrayLike) -> float:
    """The 2-Wasserstein distance between two equal-size empirical samples ``(n, d)``.

    Exact optimal matching of the points (Hungarian algorithm); O(n^3), fine for the
    2,000-point comparisons of the 2D benchmarks.
    """
    from scipy.optimize import linear_sum_assignment

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape:
        raise ValueError(f"wasserstein2 needs samples of one shape, got {x.shape} and {y.shape}.")
    cost = np.sum((x[:, None] - y[None]) ** 2, -1)
    rows, cols = linear_sum_assignment(cost)
    return float(np.sqrt(cost[rows, cols].mean()))
