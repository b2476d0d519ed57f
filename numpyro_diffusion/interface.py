"""The model interface every diffusion model and composition implements.

Models are pytrees (as in Equinox): arrays such as network parameters, mixture
means and guidance scales are leaves, so a model passed as an argument to a
compiled program is data, and a retrained or reloaded model of the same
architecture reuses the program. What fixes the program's shape (the network
module, the schedule, the event shape, the parameterization) is static.
"""

from __future__ import annotations

import abc
from functools import partial
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from numpyro_diffusion.progress import progress_scan
from numpyro_diffusion.schedules import VPSchedule

__all__ = ["Diffusion", "check_compatible", "shared_schedule"]


class Diffusion(abc.ABC):
    """A sequence of densities ``p_t`` on ``event_shape``, one per schedule level.

    Subclasses give :meth:`eps`, :meth:`energy` and :attr:`has_energy`; the score,
    the Tweedie denoiser and ancestral sampling follow. Every method takes one
    unbatched ``x`` of shape ``event_shape`` and a scalar integer ``t`` (possibly
    traced); batch with ``jax.vmap``.

    Subclasses name their attributes in ``data_fields`` (pytree leaves: arrays and
    other models) and ``static_fields`` (hashable, compared by value); every subclass
    is registered as a pytree.
    """

    schedule: VPSchedule
    event_shape: tuple[int, ...]
    data_fields: ClassVar[tuple[str, ...]] = ()
    static_fields: ClassVar[tuple[str, ...]] = ("schedule", "event_shape")
    energy_normalized: ClassVar[bool] = False
    """Whether ``energy`` is ``-log p_t`` exactly (no free constant per level)."""

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        jax.tree_util.register_pytree_node(cls, cls._tree_flatten, cls._tree_unflatten)

    def _tree_flatten(self) -> tuple[tuple, tuple]:
        children = tuple(getattr(self, f) for f in self.data_fields)
        return children, tuple(getattr(self, f) for f in self.static_fields)

    @classmethod
    def _tree_unflatten(cls, aux: tuple, children: tuple) -> Diffusion:
        obj = object.__new__(cls)
        for name, value in zip(cls.static_fields, aux, strict=True):
            object.__setattr__(obj, name, value)
        for name, value in zip(cls.data_fields, children, strict=True):
            object.__setattr__(obj, name, value)
        return obj

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
        return self.schedule.denoise(x, self.eps(x, t, cond), t)

    def sample(
        self,
        rng_key: Array,
        num_samples: int,
        cond: Any = None,
        *,
        t: int | None = None,
        levels: Any = None,
        progress_bar: bool = False,
    ) -> Array:
        """Ancestral (DDPM) reverse diffusion from ``N(0, I)``.

        ``levels`` as in :meth:`VPSchedule.walk_levels` (``None``: every level from
        ``first_conditioned_level``; an int: that many evenly spaced levels,
        respaced DDPM steps between them). Returns ``(num_samples, *event_shape)``:
        with ``t=None`` the clean data (the last step is the noiseless Tweedie
        mean), with a level ``t`` draws of ``p_t`` (the walk stops at ``x_t``). ``t``
        must be concrete: the walk's length depends on it.
        """
        if isinstance(t, jax.core.Tracer):
            raise ValueError(
                "sampling at a traced noise level is not supported: the walk's length "
                "depends on t; give a concrete level."
            )
        cond = self.check_cond(cond)
        steps = jnp.asarray(self.schedule.walk_steps(levels, None if t is None else int(t)))
        # one compiled walk per model structure, cond structure and walk length: the
        # model's arrays are arguments, so a loop over classes or models compiles once
        return _ancestral_walk(self, rng_key, steps, cond, int(num_samples), bool(progress_bar))

    def check_event(self, x: ArrayLike) -> None:
        """Raise ``ValueError`` unless ``x`` has shape ``event_shape``."""
        shape = tuple(jnp.shape(x))
        if shape != tuple(self.event_shape):
            raise ValueError(
                f"x has shape {shape} but this model's event_shape is "
                f"{tuple(self.event_shape)}; methods take one unbatched x (use jax.vmap "
                "for batches)."
            )

    def check_cond(self, cond: Any) -> Any:
        """Raise ``ValueError`` for a condition this model cannot take (concrete values);
        return it. Models without classes take any array the network accepts."""
        return cond

    def check_level(self, t: ArrayLike) -> None:
        """Raise ``ValueError`` for a concrete level outside the schedule (traced pass)."""
        self.schedule.check_level(t)


def check_compatible(models: list[Diffusion] | tuple[Diffusion, ...], what: str) -> None:
    """Raise ``ValueError`` unless all models share one schedule and one event shape."""
    if len(models) == 0:
        raise ValueError(f"{what} needs at least one model.")
    for i, m in enumerate(models):
        if not isinstance(m, Diffusion):
            raise TypeError(
                f"{what}: model {i} is a {type(m).__name__}, not a diffusion model "
                "(the Diffusion interface)."
            )
    first = models[0]
    for i, m in enumerate(models[1:], start=1):
        if tuple(m.event_shape) != tuple(first.event_shape):
            raise ValueError(
                f"{what}: model {i} has event_shape {tuple(m.event_shape)} but model 0 has "
                f"{tuple(first.event_shape)}; composed models must share one event shape."
            )
    shared_schedule(models, what)


def shared_schedule(models: Any, what: str = "the model") -> VPSchedule | None:
    """The schedule every model in ``models`` uses (``None`` for no models).

    Raises ``ValueError`` naming the two schedules when they differ.
    """
    models = list(models)
    if not models:
        return None
    first = models[0].schedule
    for m in models[1:]:
        if m.schedule != first:
            raise ValueError(
                f"{what}: its diffusion models use different schedules ({first!r} and "
                f"{m.schedule!r}); every diffusion model must share one schedule."
            )
    return first


@partial(jax.jit, static_argnums=(4, 5))
def _ancestral_walk(
    model: Diffusion, rng_key: Array, steps: Array, cond: Any, num_samples: int, progress: bool
) -> Array:
    init_key, walk_key = jax.random.split(rng_key)
    x = jax.random.normal(init_key, (num_samples, *model.event_shape))
    batched_eps = jax.vmap(model.eps, in_axes=(0, None, None))

    def body(x, i_step):
        i, (s, t_next) = i_step
        noise = jax.random.normal(jax.random.fold_in(walk_key, i), x.shape)
        x_next = model.schedule.ddpm_step(x, batched_eps(x, s, cond), s, t_next, noise)
        return jnp.where(s > t_next, x_next, x), None

    x, _ = progress_scan(
        body, x, steps, length=len(steps), label="reverse diffusion", enabled=progress
    )
    return x
