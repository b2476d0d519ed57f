"""A trained network as a diffusion model with the unbatched model interface."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from numpyro_diffusion.errors import EnergyUnavailableError
from numpyro_diffusion.interface import Diffusion
from numpyro_diffusion.parameterization import check_parameterization, eps_from_prediction
from numpyro_diffusion.schedules import VPSchedule

__all__ = ["DiffusionModel"]


class DiffusionModel(Diffusion):
    """A Flax network, its parameters, a schedule and a parameterization.

    Parameters
    ----------
    network
        A Flax module called as ``network.apply(params, x, t, cond)`` with ``x`` of
        shape ``(B, *event_shape)``, integer ``t`` of shape ``(B,)`` and ``cond`` of
        shape ``(B,)`` or ``None``. It returns an array shaped like ``x`` (the
        parameterization's target) or, for ``"energy"``, raw energies of shape ``(B,)``.
    params
        The network's variables.
    schedule
        The :class:`VPSchedule` the network was trained on.
    parameterization
        One of ``"eps"``, ``"x0"``, ``"v"``, ``"score"``, ``"energy"``. An energy
        network's raw output ``E_raw`` gives ``eps = grad_x E_raw`` and
        ``energy = E_raw / sigma_t`` (Du et al.'s convention).
    event_shape
        Shape of one unbatched sample, e.g. ``(2,)`` or ``(8, 8, 1)``.
    """

    def __init__(
        self,
        network: Any,
        params: Any,
        schedule: VPSchedule,
        parameterization: str,
        event_shape: Sequence[int],
    ):
        check_parameterization(parameterization)
        if not isinstance(schedule, VPSchedule):
            raise TypeError(f"schedule must be a VPSchedule, got {type(schedule).__name__}.")
        self.network = network
        self.params = params
        self.schedule = schedule
        self.parameterization = parameterization
        self.event_shape = tuple(int(d) for d in event_shape)

    @property
    def has_energy(self) -> bool:
        return self.parameterization == "energy"

    def _apply(self, x: Array, t: ArrayLike, cond: Any) -> Array:
        tb = jnp.reshape(jnp.asarray(t, dtype=jnp.int32), (1,))
        cb = None if cond is None else jnp.reshape(jnp.asarray(cond, dtype=jnp.int32), (1,))
        return self.network.apply(self.params, x[None], tb, cb)[0]

    def raw_energy(self, x: Array, t: ArrayLike, cond: Any = None) -> Array:
        """The energy network's raw output ``E_raw(x, t)`` (a scalar)."""
        if not self.has_energy:
            raise EnergyUnavailableError(f"This {self.parameterization}-parameterized model")
        return self._apply(x, t, cond)

    def eps(self, x: Array, t: ArrayLike, cond: Any = None) -> Array:
        self.check_event(x)
        if self.has_energy:
            return jax.grad(self.raw_energy)(x, t, cond)
        prediction = self._apply(x, t, cond)
        return eps_from_prediction(
            prediction, x, self.schedule.alpha_bars[t], self.parameterization
        )

    def energy(self, x: Array, t: ArrayLike, cond: Any = None) -> Array:
        self.check_event(x)
        return self.raw_energy(x, t, cond) / self.schedule.sigmas[t]

    def __repr__(self) -> str:
        return (
            f"DiffusionModel(network={type(self.network).__name__}, "
            f"parameterization={self.parameterization!r}, event_shape={self.event_shape}, "
            f"schedule={self.schedule!r})"
        )
