"""Exact answers and Monte Carlo tolerances shared by the tests."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from numpyro_diffusion import GaussianMixtureDiffusion, VPSchedule


def ring_mixture(schedule: VPSchedule, k: int = 8, radius: float = 1.0, std: float = 0.15):
    angles = 2 * np.pi * np.arange(k) / k
    means = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return GaussianMixtureDiffusion(means, np.full((k, 2), std), schedule=schedule)


def _pair_moments(a: GaussianMixtureDiffusion, b: GaussianMixtureDiffusion, t: int):
    """Component moments of both mixtures at ``t`` and the log of each pair's weighted
    overlap ``w_i v_j N(m_i; n_j, S_i + R_j)``, ``(Ka, Kb)``."""
    ma, va = (np.asarray(v, np.float64) for v in a.component_moments(t))
    mb, vb = (np.asarray(v, np.float64) for v in b.component_moments(t))
    wa, wb = np.log(np.asarray(a.weights, np.float64)), np.log(np.asarray(b.weights, np.float64))
    s = va[:, None] + vb[None]
    d = ma[:, None] - mb[None]
    log_overlap = -0.5 * np.sum(d**2 / s + np.log(2 * np.pi * s), axis=-1)
    return ma, va, mb, vb, wa[:, None] + wb[None] + log_overlap


def product_of_mixtures(a: GaussianMixtureDiffusion, b: GaussianMixtureDiffusion, t: int):
    """The product of two diagonal Gaussian mixtures at level ``t``, in closed form.

    Returns (log_weights (KaKb,), means (KaKb, D), variances (KaKb, D)), normalised.
    """
    ma, va, mb, vb, log_pair = _pair_moments(a, b, t)
    log_w = log_pair.reshape(-1)
    log_w -= np.logaddexp.reduce(log_w)
    var = 1.0 / (1.0 / va[:, None] + 1.0 / vb[None])
    mean = var * (ma[:, None] / va[:, None] + mb[None] / vb[None])
    return log_w, mean.reshape(-1, ma.shape[1]), var.reshape(-1, ma.shape[1])


def product_log_normaliser(a: GaussianMixtureDiffusion, b: GaussianMixtureDiffusion, t: int):
    """``log integral p_a(x, t) p_b(x, t) dx = log sum_ij w_i v_j N(m_i; n_j, S_i + R_j)``."""
    return float(np.logaddexp.reduce(_pair_moments(a, b, t)[-1].reshape(-1)))


def mixture_assignments(x, log_w, means, var):
    """Index of the most responsible component for each row of ``x`` (N, D)."""
    x = jnp.asarray(x)
    log_n = -0.5 * jnp.sum((x[:, None] - means) ** 2 / var + jnp.log(2 * jnp.pi * var), -1)
    return np.asarray(jnp.argmax(log_w + log_n, axis=1))


def expected_assignment_masses(log_w, means, var, n=200_000, seed=0):
    """Masses of the argmax-responsibility cells under the exact mixture (Monte Carlo, large n)."""
    rng = np.random.default_rng(seed)
    k = rng.choice(len(log_w), size=n, p=np.exp(log_w))
    x = means[k] + np.sqrt(var[k]) * rng.standard_normal((n, means.shape[1]))
    return np.bincount(mixture_assignments(x, log_w, means, var), minlength=len(log_w)) / n


def total_variation(p, q) -> float:
    return 0.5 * float(np.sum(np.abs(np.asarray(p) - np.asarray(q))))


def mixture_log_prob(x, log_w, means, var):
    x = jnp.asarray(x)
    log_n = -0.5 * jnp.sum((x[:, None] - means) ** 2 / var + jnp.log(2 * jnp.pi * var), -1)
    return logsumexp(log_w + log_n, axis=1)


def assert_moments(samples, mean, cov, z: float = 4.5, extra: float = 0.0):
    """Check sample mean and covariance against exact values.

    The tolerance is ``z`` Monte Carlo standard errors, estimated from the samples
    themselves (the standard error of a mean is ``sd / sqrt(n)``; of a covariance
    entry ``sd((x_i - m_i)(x_j - m_j)) / sqrt(n)``), plus an optional absolute
    ``extra`` for a known discretisation bias.
    """
    x = np.asarray(samples, np.float64)
    n = x.shape[0]
    mean, cov = np.asarray(mean), np.asarray(cov)
    m_hat = x.mean(0)
    se_mean = x.std(0) / np.sqrt(n)
    assert np.all(np.abs(m_hat - mean) <= z * se_mean + extra), (m_hat, mean, se_mean)
    c = x - mean
    prods = c[:, :, None] * c[:, None, :]
    cov_hat = prods.mean(0)
    se_cov = prods.std(0) / np.sqrt(n)
    assert np.all(np.abs(cov_hat - cov) <= z * se_cov + extra), (cov_hat, cov, se_cov)


def grid_moments(log_density, lo=-4.0, hi=4.0, n=801):
    """Mean and covariance of a 2D unnormalised density by quadrature on a fine grid."""
    g = np.linspace(lo, hi, n)
    xx, yy = np.meshgrid(g, g, indexing="ij")
    pts = jnp.asarray(np.stack([xx.ravel(), yy.ravel()], 1), jnp.float32)
    lp = np.asarray(log_density(pts), np.float64)
    w = np.exp(lp - lp.max())
    w /= w.sum()
    p = np.asarray(pts, np.float64)
    mean = w @ p
    c = p - mean
    cov = (w[:, None] * c).T @ c
    return mean, cov


class ScoreOnly:
    """Wraps an exact model so that only its eps/score are visible (for refusal tests)."""

    def __new__(cls, model):
        from numpyro_diffusion.errors import EnergyUnavailableError
        from numpyro_diffusion.interface import Diffusion

        class _ScoreOnly(Diffusion):
            data_fields = ("inner",)

            def __init__(self, inner):
                self.inner = inner
                self.schedule = inner.schedule
                self.event_shape = inner.event_shape

            @property
            def has_energy(self):
                return False

            def eps(self, x, t, cond=None):
                return self.inner.eps(x, t, cond)

            def energy(self, x, t, cond=None):
                raise EnergyUnavailableError("This score-only test model")

        return _ScoreOnly(model)
