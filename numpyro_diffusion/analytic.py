"""The exact diffusion of a Gaussian mixture: ground truth for tests and benchmarks."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.scipy.special import logsumexp
from jax.typing import ArrayLike

from numpyro_diffusion.interface import Diffusion
from numpyro_diffusion.schedules import VPSchedule

__all__ = ["GaussianMixtureDiffusion"]


class GaussianMixtureDiffusion(Diffusion):
    """A mixture of diagonal Gaussians pushed through the forward diffusion exactly.

    At level ``t`` component ``k`` is ``N(sqrt(abar_t) m_k, abar_t s_k^2 + sigma_t^2)``,
    so ``log_prob``, ``energy``, ``score``, ``eps`` and ``denoise`` are exact.

    Parameters
    ----------
    means, stds
        Arrays of shape ``(K, D)``; ``stds`` positive.
    weights
        Shape ``(K,)``, positive; normalised here. Uniform by default.
    schedule
        A :class:`VPSchedule`; ``VPSchedule.linear()`` by default.

    ``cond=k`` (an integer, possibly traced) restricts every method to component
    ``k``, which makes classifier-free guidance exactly computable. Energies are
    normalised (``energy = -log p_t`` exactly).
    """

    data_fields = ("means", "stds", "weights")
    energy_normalized = True

    def __init__(
        self,
        means: ArrayLike,
        stds: ArrayLike,
        weights: ArrayLike | None = None,
        schedule: VPSchedule | None = None,
    ):
        means_np = np.asarray(means, dtype=np.float32)
        stds_np = np.asarray(stds, dtype=np.float32)
        if means_np.ndim != 2:
            raise ValueError(f"means must have shape (K, D), got {means_np.shape}.")
        if stds_np.shape != means_np.shape:
            raise ValueError(
                f"stds must have the shape of means {means_np.shape}, got {stds_np.shape}."
            )
        if np.any(stds_np <= 0):
            raise ValueError("every std must be positive.")
        k = means_np.shape[0]
        weights_np = np.full(k, 1.0 / k) if weights is None else np.asarray(weights, np.float64)
        if weights_np.shape != (k,) or np.any(weights_np <= 0):
            raise ValueError(f"weights must be {k} positive numbers, got {weights_np}.")
        self.means = jnp.asarray(means_np)
        self.stds = jnp.asarray(stds_np)
        self.weights = jnp.asarray(weights_np / weights_np.sum(), dtype=jnp.float32)
        self.schedule = VPSchedule.linear() if schedule is None else schedule
        self.event_shape = (means_np.shape[1],)

    @property
    def num_components(self) -> int:
        return int(self.means.shape[0])

    @property
    def has_energy(self) -> bool:
        return True

    def check_cond(self, cond: Any) -> Any:
        if cond is None:
            return None
        cond = jnp.asarray(cond)
        if cond.ndim != 0 or not jnp.issubdtype(cond.dtype, jnp.integer):
            raise ValueError(
                f"cond selects one component: an integer in 0 .. {self.num_components - 1}, "
                f"got shape {cond.shape} and dtype {cond.dtype}."
            )
        if not isinstance(cond, jax.core.Tracer) and not 0 <= int(cond) < self.num_components:
            raise ValueError(
                f"component {int(cond)} is out of range: this mixture has components 0 .. "
                f"{self.num_components - 1}."
            )
        return cond

    def _log_weights(self, cond: Any) -> Array:
        log_w = jnp.log(self.weights)
        if cond is None:
            return log_w
        cond = self.check_cond(cond)
        return jnp.where(jnp.arange(self.num_components) == cond, 0.0, -jnp.inf)

    def component_moments(self, t: ArrayLike | None) -> tuple[Array, Array]:
        """Means and variances of the components at level ``t``, each ``(K, D)``.

        ``t=None`` gives the clean data distribution.
        """
        if t is None:
            return self.means, self.stds**2
        self.check_level(t)
        abar = self.schedule.alpha_bars[t]
        return jnp.sqrt(abar) * self.means, abar * self.stds**2 + (1.0 - abar)

    def _log_prob(self, x: Array, t: ArrayLike | None, cond: Any) -> Array:
        mu, var = self.component_moments(t)
        log_n = -0.5 * jnp.sum((x - mu) ** 2 / var + jnp.log(2 * jnp.pi * var), axis=-1)
        return logsumexp(self._log_weights(cond) + log_n)

    def log_prob(self, x: Array, t: ArrayLike, cond: Any = None) -> Array:
        """Normalised ``log p_t(x)``; a scalar."""
        self.check_event(x)
        return self._log_prob(x, t, cond)

    def data_log_prob(self, x: Array, cond: Any = None) -> Array:
        """Normalised log-density of the clean data (the undiffused mixture)."""
        self.check_event(x)
        return self._log_prob(x, None, cond)

    def energy(self, x: Array, t: ArrayLike, cond: Any = None) -> Array:
        return -self.log_prob(x, t, cond)

    def score(self, x: Array, t: ArrayLike, cond: Any = None) -> Array:
        return jax.grad(self.log_prob)(x, t, cond)

    def eps(self, x: Array, t: ArrayLike, cond: Any = None) -> Array:
        return -self.schedule.sigmas[t] * self.score(x, t, cond)

    def sample(
        self,
        rng_key: Array,
        num_samples: int,
        cond: Any = None,
        *,
        t: ArrayLike | None = None,
        levels: Any = None,
        progress_bar: bool = False,
    ) -> Array:
        """Exact draws, shape ``(num_samples, D)``: the data, or ``p_t`` when ``t`` is given.

        ``levels`` and ``progress_bar`` are accepted for the interface and ignored.
        """
        del levels, progress_bar
        key_k, key_x = jax.random.split(rng_key)
        mu, var = self.component_moments(t)
        k = jax.random.categorical(key_k, self._log_weights(cond), shape=(num_samples,))
        z = jax.random.normal(key_x, (num_samples, self.event_shape[0]))
        return mu[k] + jnp.sqrt(var[k]) * z

    def __repr__(self) -> str:
        return (
            f"GaussianMixtureDiffusion(K={self.num_components}, D={self.event_shape[0]}, "
            f"schedule={self.schedule!r})"
        )
