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
from numpyro_diffusion.networks import accepts_single_examples, network_num_classes
from numpyro_diffusion.parameterization import check_parameterization, eps_from_prediction
from numpyro_diffusion.schedules import VPSchedule

__all__ = ["DiffusionModel"]


class DiffusionModel(Diffusion):
    """A Flax network, its parameters, a schedule and a parameterization.

    A pytree whose leaves are the parameters: a retrained or reloaded model of the
    same architecture passed to a compiled program reuses it.

    Parameters
    ----------
    network
        A Flax module called as ``network.apply(params, x, t, cond)`` with ``x`` of
        shape ``(B, *event_shape)``, integer ``t`` of shape ``(B,)`` and ``cond`` a
        batch ``(B, ...)`` of conditions or ``None``. It returns an array shaped like
        ``x`` (the parameterization's target) or, for ``"energy"``, raw energies of
        shape ``(B,)``. A network whose ``single_example_calls`` is true is called on
        one example unbatched instead (``x`` of ``event_shape``, scalar ``t``).
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

    ``cond`` is whatever one example's condition is for the network: a class index
    for the built-in class-conditional networks (``0 .. num_classes - 1``, or
    ``num_classes`` for the null class; ``None`` is the null class too), or any
    array (a vector, an image) for a custom network.
    """

    data_fields = ("params",)
    static_fields = ("network", "schedule", "parameterization", "event_shape")

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

    @property
    def num_classes(self) -> int | None:
        """Classes of a built-in class-conditional network (``None`` otherwise)."""
        return network_num_classes(self.network)

    def check_cond(self, cond: Any) -> Array | None:
        """``cond`` as the network takes it for one example; raises on a bad class.

        Class indices must be integers in ``0 .. num_classes`` (the last is the null
        class); concrete values are range-checked, traced ones cannot be.
        """
        if cond is None:
            return None
        classes = self.num_classes
        if classes is None:
            return jnp.asarray(cond)
        cond = jnp.asarray(cond)
        if cond.ndim != 0 or not jnp.issubdtype(cond.dtype, jnp.integer):
            raise ValueError(
                f"this model is class-conditional ({classes} classes): cond must be one "
                f"integer class index, got shape {cond.shape} and dtype {cond.dtype}; for a "
                "batch use jax.vmap."
            )
        if not isinstance(cond, jax.core.Tracer):
            value = int(cond)
            if not 0 <= value <= classes:
                raise ValueError(
                    f"class {value} is out of range: this model has classes 0 .. "
                    f"{classes - 1} (and {classes}, the null class; cond=None is the same)."
                )
        return cond

    def _apply(self, x: Array, t: ArrayLike, cond: Any) -> Array:
        self.check_event(x)
        self.check_level(t)
        cond = self.check_cond(cond)
        t = jnp.reshape(jnp.asarray(t, dtype=jnp.int32), ())
        if accepts_single_examples(self.network):
            return self.network.apply(self.params, x, t, cond)
        cb = None if cond is None else cond[None]
        return self.network.apply(self.params, x[None], t[None], cb)[0]

    def raw_energy(self, x: Array, t: ArrayLike, cond: Any = None) -> Array:
        """The energy network's raw output ``E_raw(x, t)`` (a scalar)."""
        if not self.has_energy:
            raise EnergyUnavailableError(f"This {self.parameterization}-parameterized model")
        return self._apply(x, t, cond)

    def eps(self, x: Array, t: ArrayLike, cond: Any = None) -> Array:
        if self.has_energy:
            return jax.grad(self.raw_energy)(x, t, cond)
        prediction = self._apply(x, t, cond)
        return eps_from_prediction(
            prediction, x, self.schedule.alpha_bars[t], self.parameterization
        )

    def energy(self, x: Array, t: ArrayLike, cond: Any = None) -> Array:
        return self.raw_energy(x, t, cond) / self.schedule.sigmas[t]

    def __repr__(self) -> str:
        return (
            f"DiffusionModel(network={type(self.network).__name__}, "
            f"parameterization={self.parameterization!r}, event_shape={self.event_shape}, "
            f"schedule={self.schedule!r})"
        )
