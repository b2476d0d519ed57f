"""Sample-quality metrics: MMD and the 2-Wasserstein distance for low-dimensional samples;
PSNR, the Frechet distance and an Inception-Score-like score for images."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

__all__ = [
    "mmd",
    "wasserstein2",
    "psnr",
    "frechet_distance",
    "classifier_score",
    "mean_and_standard_error",
]


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


def psnr(
    estimate: ArrayLike, truth: ArrayLike, mask: ArrayLike | None = None, data_range: float = 2.0
) -> np.ndarray:
    """Peak signal-to-noise ratio per image, in dB, over the pixels where ``mask`` is true.

    ``estimate`` ``(N, *event_shape)``; ``truth`` and ``mask`` of shape ``event_shape``
    or ``(N, *event_shape)``; ``data_range`` is ``max - min`` of the pixel scale (2 for
    ``[-1, 1]``). Returns ``(N,)``.
    """
    estimate = np.asarray(estimate, np.float64)
    if estimate.ndim < 2:
        raise ValueError(f"estimate must have shape (N, *event_shape), got {estimate.shape}.")
    truth = np.broadcast_to(np.asarray(truth, np.float64), estimate.shape)
    weight = np.ones(estimate.shape) if mask is None else np.broadcast_to(mask, estimate.shape)
    axes = tuple(range(1, estimate.ndim))
    count = weight.sum(axis=axes)
    if np.any(count == 0):
        raise ValueError("mask selects no pixel of some image; PSNR needs at least one.")
    mse = np.sum(weight * (estimate - truth) ** 2, axis=axes) / count
    return 10.0 * np.log10(data_range**2 / np.maximum(mse, 1e-20))


def frechet_distance(features: ArrayLike, reference: ArrayLike) -> float:
    """The Frechet distance between Gaussians fitted to two feature sets ``(n, d)``, ``(m, d)``.

    ``||mu_1 - mu_2||^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))`` (Heusel et al.'s FID
    when the features are Inception's). Singular covariances (fewer samples than
    features, constant features) get ``1e-6 * I`` added, as in Heusel et al.'s code;
    an imaginary part of the matrix root beyond round-off raises ``ValueError``.
    """
    from scipy.linalg import sqrtm

    a, b = np.asarray(features, np.float64), np.asarray(reference, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"features must be (n, d) and (m, d), got {a.shape} and {b.shape}.")
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError("the Frechet distance needs at least 2 samples in each set.")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("features hold NaN or inf values.")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a = np.atleast_2d(np.cov(a, rowvar=False))
    cov_b = np.atleast_2d(np.cov(b, rowvar=False))
    root = sqrtm(cov_a @ cov_b)
    if not np.all(np.isfinite(root)) or np.linalg.matrix_rank(cov_a @ cov_b) < len(cov_a):
        offset = 1e-6 * np.eye(len(cov_a))
        root = sqrtm((cov_a + offset) @ (cov_b + offset))
    if np.iscomplexobj(root):
        scale = max(1.0, float(np.max(np.abs(root.real))))
        if np.max(np.abs(root.imag)) > 1e-3 * scale:
            raise ValueError(
                f"the matrix square root has an imaginary part of {np.max(np.abs(root.imag)):.3g}"
                ": the covariances are ill-conditioned; use more samples or fewer features."
            )
        root = root.real
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2.0 * root))


def classifier_score(probabilities: ArrayLike) -> float:
    """The Inception-Score-like ``exp(E_x KL(p(y | x) || p(y)))`` of class probabilities ``(n, K)``.

    1 when every sample gets the same prediction, ``K`` for confident predictions
    spread evenly over the ``K`` classes.
    """
    p = np.asarray(probabilities, np.float64)
    if p.ndim != 2:
        raise ValueError(f"probabilities must be (n, K), got {p.shape}.")
    marginal = p.mean(0, keepdims=True)
    kl = np.sum(p * (np.log(np.maximum(p, 1e-30)) - np.log(np.maximum(marginal, 1e-30))), 1)
    return float(np.exp(kl.mean()))


def mean_and_standard_error(values: ArrayLike) -> tuple[float, float]:
    """The mean of ``values`` ``(n,)`` (independent replicates: images, instances, seeds)
    and its standard error ``std / sqrt(n)`` (``ddof=1``); NaN for fewer than two."""
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    se = values.std(ddof=1) / np.sqrt(n) if n > 1 else np.nan
    return float(values.mean()), float(se)
