"""The model interface every diffusion model and composition implements."""

from __future__ import annotations

import abc
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from numpyro_diffusion.progress import progress_scan
from numpyro_diffusion.schedules import VPSchedule

__all__ = ["Diffusion"]


class Diffusion(abc.ABC):
    """A sequence of densities ``p_t`` on ``event_shape``, one per schedule level.

    Subclasses give :meth:`eps`, :meth:`energy` and :attr:`has_energy`; the score,
    the Tweedie denoiser and ancestral sampling follow. Every method takes one
    unbatched ``x`` of shape ``event_shape`` and a scalar integer ``t`` (possibly
    traced); batch with ``jax.vmap``.
    """

    schedule: VPSchedule
    event_shape: tuple[int, ...]

    @property
    @abc.abstractmethod
    def has_energy(self) -> bool:
        """Whether :meth:`energy` returns a value (else it raises ``EnergyUnavailableError``)."""

    @abc.abstractmethod
    def eps(self, x: Array, t: ArrayLike, cond: Any = None) -> Array:
        """Predicted noise at ``(x, t)``; shape ``event_shape``."""

    @abc.abstractmethod
    def energy(self, x: Array, t: ArrayLike, cond: Any = None) -> Array:
        """Unnormalised ``-log p_t(x)``; a scalar."""

    def score(self, x: Array, t: ArrayLike, cond: Any = None) -> Array:
        """``grad_x log p_t(x) = -eps / sigma_t``; shape ``event_shape``."""
        return -self.eps(x, t, cond) / self.schedule.sigmas[t]

    def denoise(self, x: Array, t: ArrayLike, cond: Any = None) -> Array:
        """Tweedie's ``E[x_0 | x_t = x] = (x - sigma_t eps) / sqrt(abar_t)``."""
        abar = self.schedule.alpha_bars[t]
        return (x - jnp.sqrt(1.0 - abar) * self.eps(x, t, cond)) / jnp.sqrt(abar)

    def sample(
        self,
        rng_key: Array,
        num_samples: int,
        cond: Any = None,
        *,
        levels: Any = None,
        progress_bar: bool = False,
    ) -> Array:
        """Ancestral (DDPM) reverse diffusion from ``N(0, I)`` at ``T - 1`` to the data.

        ``levels`` as in :meth:`VPSchedule.walk_levels` (``None``: every level; an int:
        that many evenly spaced levels, respaced DDPM steps between them). Returns an
        array of shape ``(num_samples, *event_shape)``. The last step is the noiseless
        Tweedie mean at ``t = 0``.
        """
        steps = jnp.asarray(self.schedule.walk_steps(levels))
        init_key, walk_key = jax.random.split(rng_key)
        x = jax.random.normal(init_key, (num_samples, *self.event_shape))
        batched_eps = jax.vmap(self.eps, in_axes=(0, None, None))

        def body(x, i_step):
            i, (s, t) = i_step
            noise = jax.random.normal(jax.random.fold_in(walk_key, i), x.shape)
            x = self.schedule.ddpm_step(x, batched_eps(x, s, cond), s, t, noise)
            return x, None

        x, _ = progress_scan(
            body, x, steps, length=len(steps), label="reverse diffusion", enabled=progress_bar
        )
        return x

    def check_event(self, x: ArrayLike) -> None:
        """Raise ``ValueError`` unless ``x`` has shape ``event_shape``."""
        shape = tuple(jnp.shape(x))
        if shape != tuple(self.event_shape):
            raise ValueError(
                f"x has shape {shape} but this model's event_shape is "
                f"{tuple(self.event_shape)}; methods take one unbatched x (use jax.vmap "
                "for batches)."
            )


def check_compatible(models: list[Diffusion] | tuple[Diffusion, ...], what: str) -> None:
    """Raise ``ValueError`` unless all models share one schedule and one event shape."""
    if len(models) == 0:
        raise ValueError(f"{what} needs at least one model.")
    first = models[0]
    for i, m in enumerate(models[1:], start=1):
        if tuple(m.event_shape) != tuple(first.event_shape):
            raise ValueError(
                f"{what}: model {i} has event_shape {tuple(m.event_shape)} but model 0 has "
                f"{tuple(first.event_shape)}; composed models must share one event shape."
            )
        if m.schedule != first.schedule:
            raise ValueError(
                f"{what}: model {i} uses {m.schedule!r} but model 0 uses {first.schedule!r}; "
                "composed models must share one noise schedule."
            )
