"""Variance-preserving noise schedules in discrete DDPM time."""

from __future__ import annotations

import math
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

__all__ = ["VPSchedule"]


class VPSchedule:
    """A discrete variance-preserving schedule, ``x_t = sqrt(abar_t) x_0 + sigma_t eps``.

    ``t`` runs over ``0 .. num_steps - 1`` and ``t = 0`` is the least noisy level.
    Build one with :meth:`linear` or :meth:`cosine`, or pass ``betas`` directly.

    Attributes
    ----------
    betas, alphas, alpha_bars, sigmas
        Arrays of shape ``(num_steps,)``; ``alphas = 1 - betas``,
        ``alpha_bars = cumprod(alphas)``, ``sigmas = sqrt(1 - alpha_bars)``.
    num_steps
        Number of noise levels ``T``.
    """

    def __init__(self, betas: ArrayLike, *, kind: str = "custom", **config: Any):
        betas_np = np.asarray(betas, dtype=np.float64)
        if betas_np.ndim != 1 or betas_np.size < 2:
            raise ValueError(
                f"betas must be a 1-D array of at least 2 levels, got shape {betas_np.shape}."
            )
        if not np.all(np.isfinite(betas_np)) or np.any(betas_np <= 0) or np.any(betas_np >= 1):
            raise ValueError("every beta must lie strictly between 0 and 1.")
        alpha_bars = np.cumprod(1.0 - betas_np)
        if alpha_bars[-1] > 0.01:
            warnings.warn(
                f"this schedule ends at alpha_bar = {alpha_bars[-1]:.3g}, so its last level "
                "is far from N(0, I) and reverse diffusion started from noise is biased; "
                "raise beta_end (about 20 / num_steps for a linear schedule) or use "
                "VPSchedule.cosine.",
                stacklevel=3,
            )
        self.kind = kind
        self.config = dict(config)
        self.num_steps = int(betas_np.size)
        self._betas = betas_np
        self.betas = jnp.asarray(betas_np, dtype=jnp.float32)
        self.alphas = jnp.asarray(1.0 - betas_np, dtype=jnp.float32)
        self.alpha_bars = jnp.asarray(alpha_bars, dtype=jnp.float32)
        self.sigmas = jnp.asarray(np.sqrt(1.0 - alpha_bars), dtype=jnp.float32)

    @classmethod
    def linear(
        cls, num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 2e-2
    ) -> VPSchedule:
        """Betas linear in ``t`` from ``beta_start`` to ``beta_end`` (Ho et al., 2020)."""
        _check_num_steps(num_steps)
        if not 0 < beta_start <= beta_end < 1:
            raise ValueError(
                f"need 0 < beta_start <= beta_end < 1, got beta_start={beta_start}, "
                f"beta_end={beta_end}."
            )
        betas = np.linspace(beta_start, beta_end, num_steps, dtype=np.float64)
        return cls(
            betas, kind="linear", num_steps=num_steps, beta_start=beta_start, beta_end=beta_end
        )

    @classmethod
    def cosine(cls, num_steps: int = 1000, s: float = 0.008) -> VPSchedule:
        """Nichol & Dhariwal's cosine schedule, betas clipped at 0.999."""
        _check_num_steps(num_steps)
        if not s > 0:
            raise ValueError(f"the cosine offset s must be positive, got s={s}.")
        steps = np.arange(num_steps + 1, dtype=np.float64) / num_steps
        f = np.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        betas = np.clip(1.0 - f[1:] / f[:-1], 1e-12, 0.999)
        return cls(betas, kind="cosine", num_steps=num_steps, s=s)

    def to_config(self) -> dict[str, Any]:
        """A JSON-friendly description that :meth:`from_config` rebuilds."""
        if self.kind in ("linear", "cosine"):
            return {"kind": self.kind, **self.config}
        return {"kind": "custom", "betas": self._betas.tolist()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> VPSchedule:
        """The schedule that :meth:`to_config` described (``{"kind": ..., **options}``)."""
        config = dict(config)
        kind = config.pop("kind", None)
        if kind == "linear":
            return cls.linear(**config)
        if kind == "cosine":
            return cls.cosine(**config)
        if kind == "custom":
            return cls(config["betas"])
        raise ValueError(f"unknown schedule kind {kind!r}; expected linear, cosine or custom.")

    def __eq__(self, other: object) -> bool:
        # Exact, so that equal schedules hash equally (a schedule is static data of a
        # compiled program); schedules rebuilt from a config are bit-identical.
        if not isinstance(other, VPSchedule):
            return NotImplemented
        return self.num_steps == other.num_steps and np.array_equal(self._betas, other._betas)

    def __hash__(self) -> int:
        return hash((self.num_steps, self._betas.tobytes()))

    def __repr__(self) -> str:
        return f"VPSchedule(kind={self.kind!r}, num_steps={self.num_steps})"

    def walk_levels(self, levels: Any = None, stop: int = 0) -> np.ndarray:
        """The levels a reverse walk visits, as a decreasing integer array ending at ``stop``.

        ``None``: every level from :attr:`first_conditioned_level` down; an int ``n``:
        ``n`` evenly spaced levels from there down (``n = 1`` is ``stop`` alone); a
        strictly decreasing sequence (``stop`` is appended if missing).

        Walks start at ``first_conditioned_level`` because above it ``alpha_bar <
        1e-3`` (the cosine schedule's last level has ``6e-8``), the data are
        invisible, and the Tweedie estimate ``(x - sigma eps) / sqrt(alpha_bar)``
        multiplies a network's eps error by ``1 / sqrt(alpha_bar)``; a step out of
        such a level passes that error on and samples blow up. Give the sequence
        explicitly to walk the levels above it.
        """
        self.check_level(stop)
        stop = int(stop)
        top = max(self.first_conditioned_level, stop)
        usable = top - stop + 1
        if levels is None:
            return np.arange(top, stop - 1, -1, dtype=np.int32)
        if isinstance(levels, (int, np.integer)) and not isinstance(levels, bool):
            if not 1 <= levels <= usable:
                raise ValueError(
                    f"levels={levels} must lie in 1 .. {usable}: evenly spaced walks use the "
                    f"levels {top} .. {stop} (from first_conditioned_level down); give an "
                    "explicit decreasing sequence to walk others."
                )
            if levels == 1:
                return np.asarray([stop], np.int32)
            return np.round(np.linspace(top, stop, int(levels))).astype(np.int32)
        levels = np.asarray(levels)
        if levels.ndim != 1 or levels.size == 0 or not np.issubdtype(levels.dtype, np.integer):
            raise ValueError("levels must be an int, None, or a 1-D sequence of integer levels.")
        self.check_level(levels)
        if np.any(np.diff(levels) >= 0):
            raise ValueError(f"levels must be strictly decreasing, got {levels.tolist()}.")
        if levels[-1] < stop:
            raise ValueError(f"levels {levels.tolist()} go below the final level {stop}.")
        if levels[-1] != stop:
            levels = np.append(levels, stop)
        return levels.astype(np.int32)

    def walk_steps(self, levels: Any = None, stop: int | None = None) -> np.ndarray:
        """The ancestral steps of a walk over :meth:`walk_levels`: ``(L, 2)`` pairs
        ``(s, t)`` from level ``s`` to the next lower ``t``. With ``stop=None`` the walk
        ends at the clean data (the last ``t`` is -1); with a level it ends at
        ``x_stop`` (a walk of the one level ``stop`` is the no-op pair ``(stop, stop)``)."""
        if stop is None:
            walk = self.walk_levels(levels)
            return np.stack([walk, np.append(walk[1:], -1)], axis=1).astype(np.int32)
        walk = self.walk_levels(levels, stop)
        walk = walk if walk.size > 1 else np.repeat(walk, 2)
        return np.stack([walk[:-1], walk[1:]], axis=1).astype(np.int32)

    @property
    def first_conditioned_level(self) -> int:
        """The highest level with ``alpha_bar >= 1e-3`` (where default walks start)."""
        ok = np.flatnonzero(np.asarray(self.alpha_bars) >= 1e-3)
        return int(ok.max()) if ok.size else 0

    def check_level(self, t: Any) -> None:
        """Raise ``ValueError`` if a concrete level ``t`` is outside ``0 .. num_steps - 1``.

        Traced levels cannot be checked and pass.
        """
        if isinstance(t, jax.core.Tracer):
            return
        t_np = np.asarray(t)
        if not np.issubdtype(t_np.dtype, np.integer):
            raise ValueError(f"noise levels are integers, got dtype {t_np.dtype}.")
        if np.any(t_np < 0) or np.any(t_np >= self.num_steps):
            raise ValueError(
                f"noise level {t_np.tolist()} is out of range: this schedule has levels "
                f"0 .. {self.num_steps - 1}."
            )

    def noise(self, x0: Array, eps: Array, t: ArrayLike) -> Array:
        """Forward noising ``x_t = sqrt(abar_t) x0 + sigma_t eps``; ``t`` broadcasts
        against the leading axes of ``x0`` (a scalar, or ``(B,)`` for a batch)."""
        abar = _leading(self.alpha_bars[t], x0)
        return jnp.sqrt(abar) * x0 + jnp.sqrt(1.0 - abar) * eps

    def denoise(self, x: Array, eps: Array, t: ArrayLike) -> Array:
        """Tweedie's estimate ``x0_hat = (x_t - sigma_t eps) / sqrt(abar_t)``."""
        abar = _leading(self.alpha_bars[t], x)
        return (x - jnp.sqrt(1.0 - abar) * eps) / jnp.sqrt(abar)

    def ddpm_transition(
        self, x: Array, eps: Array, s: ArrayLike, t: ArrayLike
    ) -> tuple[Array, Array]:
        """Mean (shaped like ``x``) and variance (a scalar) of the ancestral step from
        level ``s`` to a lower level ``t``: the DDPM posterior ``q(x_t | x_s, x_0 =
        x0_hat)`` at Tweedie's ``x0_hat``. ``t = -1`` is the clean data (variance 0)."""
        abar_s = self.alpha_bars[s]
        abar_t = jnp.where(t >= 0, self.alpha_bars[jnp.maximum(t, 0)], 1.0)
        x0_hat = self.denoise(x, eps, s)
        beta_st = 1.0 - abar_s / abar_t
        coef_x0 = jnp.sqrt(abar_t) * beta_st / (1.0 - abar_s)
        coef_x = jnp.sqrt(abar_s / abar_t) * (1.0 - abar_t) / (1.0 - abar_s)
        var = jnp.maximum((1.0 - abar_t) / (1.0 - abar_s) * beta_st, 0.0)
        return coef_x0 * x0_hat + coef_x * x, var

    def forward_transition(self, x: Array, t: ArrayLike, s: ArrayLike) -> tuple[Array, Array]:
        """Mean (shaped like ``x``) and variance (a scalar) of the forward noising
        ``q(x_s | x_t)`` from level ``t`` up to a higher level ``s``: ``sqrt(abar_s /
        abar_t) x`` and ``1 - abar_s / abar_t``."""
        ratio = self.alpha_bars[s] / self.alpha_bars[t]
        return jnp.sqrt(ratio) * x, 1.0 - ratio

    def ddpm_step(self, x: Array, eps: Array, s: ArrayLike, t: ArrayLike, noise: Array) -> Array:
        """One ancestral step from level ``s`` to a lower level ``t`` (``t < s``).

        Samples :meth:`ddpm_transition`; for ``t = s - 1`` this is Ho et al.'s
        update, for larger jumps the respaced one, and ``t = -1`` returns ``x0_hat``.
        ``x``, ``eps`` (the model's noise prediction at ``(x, s)``) and ``noise`` (a
        standard normal draw) share one shape; ``s`` and ``t`` may be traced.
        """
        mean, var = self.ddpm_transition(x, eps, s, t)
        return mean + jnp.sqrt(var) * noise


def _leading(values: Array, x: Array) -> Array:
    """``values`` (a scalar or ``(B,)``) shaped to broadcast over ``x``'s trailing axes."""
    values = jnp.asarray(values)
    return values.reshape(values.shape + (1,) * (jnp.ndim(x) - values.ndim))


def _check_num_steps(num_steps: int) -> None:
    if not isinstance(num_steps, (int, np.integer)) or num_steps < 2:
        raise ValueError(f"num_steps must be an integer >= 2, got {num_steps!r}.")
