"""Per-level MCMC kernels: unadjusted ULA and U-HMC, and adapters around BlackJAX.

ULA and U-HMC follow BlackJAX's layout (``init``, ``build_kernel``, NamedTuple
states). They need only the gradient of the log-density, so they run on score-only
models. MALA and HMC are BlackJAX's own kernels.

Every kernel is wrapped as a :class:`LevelKernel` with one calling convention, so
the annealed sampler never branches on a kernel's name: ``init(rng_key, position,
target)`` and ``step(rng_key, state, target, step_size, inverse_mass)``, where
``target`` is a :class:`LevelTarget` at one noise level. A step that lands on a
non-finite position, density or gradient is rejected and reported as divergent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import blackjax
import jax
import jax.numpy as jnp
from jax import Array

__all__ = [
    "ULAState",
    "ULAInfo",
    "UHMCState",
    "UHMCInfo",
    "LevelTarget",
    "StepInfo",
    "LevelKernel",
    "ula",
    "uhmc",
    "KERNELS",
    "get_kernel",
]


# --------------------------------------------------------------------------- ULA


class ULAState(NamedTuple):
    position: Array  # [D]
    logdensity_grad: Array  # [D]


class ULAInfo(NamedTuple):
    is_divergent: Array  # []


def _all_finite(*arrays: Array) -> Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in arrays]))


class ula:
    """Unadjusted Langevin: ``x <- x + s grad log p(x) + sqrt(2 s) xi``."""

    @staticmethod
    def init(position: Array, logdensity_grad_fn: Callable) -> ULAState:
        return ULAState(position, logdensity_grad_fn(position))

    @staticmethod
    def build_kernel() -> Callable:
        def kernel(
            rng_key: Array, state: ULAState, logdensity_grad_fn: Callable, step_size: float
        ) -> tuple[ULAState, ULAInfo]:
            noise = jax.random.normal(rng_key, state.position.shape)
            x = state.position + step_size * state.logdensity_grad
            x = x + jnp.sqrt(2.0 * step_size) * noise
            grad = logdensity_grad_fn(x)
            ok = _all_finite(x, grad)
            new = ULAState(
                jnp.where(ok, x, state.position), jnp.where(ok, grad, state.logdensity_grad)
            )
            return new, ULAInfo(~ok)

        return kernel


# ------------------------------------------------------------------------- U-HMC


class UHMCState(NamedTuple):
    position: Array  # [D]
    momentum: Array  # [D]
    logdensity_grad: Array  # [D]


class UHMCInfo(NamedTuple):
    is_divergent: Array  # []


class uhmc:
    """Underdamped (unadjusted) HMC of Du et al.

    Partial momentum refresh ``v <- d v + sqrt(1 - d^2) xi`` with ``xi ~ N(0, M)``,
    then ``num_integration_steps`` leapfrog steps; no Metropolis correction.
    ``inverse_mass`` is a scalar or a ``(D,)`` diagonal.
    """

    @staticmethod
    def init(
        rng_key: Array, position: Array, logdensity_grad_fn: Callable, inverse_mass: Any = 1.0
    ) -> UHMCState:
        momentum = jax.random.normal(rng_key, position.shape) / jnp.sqrt(inverse_mass)
        return UHMCState(position, momentum, logdensity_grad_fn(position))

    @staticmethod
    def build_kernel(num_integration_steps: int = 3, damping: float = 0.5) -> Callable:
        def kernel(
            rng_key: Array,
            state: UHMCState,
            logdensity_grad_fn: Callable,
            step_size: float,
            inverse_mass: Any = 1.0,
        ) -> tuple[UHMCState, UHMCInfo]:
            xi = jax.random.normal(rng_key, state.position.shape) / jnp.sqrt(inverse_mass)
            v = damping * state.momentum + jnp.sqrt(1.0 - damping**2) * xi

            def leapfrog(carry, _):
                x, v, g = carry
                v = v + 0.5 * step_size * g
                x = x + step_size * inverse_mass * v
                g = logdensity_grad_fn(x)
                v = v + 0.5 * step_size * g
                return (x, v, g), None

            (x, v, g), _ = jax.lax.scan(
                leapfrog,
                (state.position, v, state.logdensity_grad),
                None,
                length=num_integration_steps,
            )
            ok = _all_finite(x, v, g)
            new = UHMCState(
                jnp.where(ok, x, state.position),
                jnp.where(ok, v, state.momentum),
                jnp.where(ok, g, state.logdensity_grad),
            )
            return new, UHMCInfo(~ok)

        return kernel


# ------------------------------------------------------------- common convention


class LevelTarget(NamedTuple):
    """The density at one noise level: ``log p_t`` and its gradient over ``(D,)``."""

    logdensity_fn: Callable[[Array], Array]
    logdensity_grad_fn: Callable[[Array], Array]


class StepInfo(NamedTuple):
    acceptance_rate: Array  # [] in [0, 1]; 1 for unadjusted kernels unless divergent
    is_divergent: Array  # [] bool


class LevelKernel(NamedTuple):
    """A kernel in the annealed sampler's convention.

    ``init(rng_key, position, target, inverse_mass) -> state``;
    ``step(rng_key, state, target, step_size, inverse_mass) -> (state, StepInfo)``;
    ``position(state) -> (D,)``; ``logdensity(state) -> ()`` for kernels whose state
    carries the log-density (``None`` otherwise).
    """

    name: str
    needs_energy: bool
    target_accept: float | None
    init: Callable
    step: Callable
    position: Callable[[Any], Array]
    logdensity: Callable[[Any], Array] | None = None


def _guard(old, new, info_accept, info_divergent):
    """Reject a non-finite accepted state and count NaN acceptance as a divergence."""
    finite_accept = jnp.isfinite(info_accept)
    ok = _all_finite(new.position, new.logdensity, new.logdensity_grad)
    divergent = info_divergent | ~finite_accept | ~ok
    state = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)
    accept = jnp.where(finite_accept & ok, info_accept, 0.0)
    return state, StepInfo(accept, divergent)


def _mala_kernel(divergence_threshold: float, **unused: Any) -> LevelKernel:
    del unused
    del divergence_threshold
    kernel = blackjax.mala.build_kernel()

    def init(rng_key, position, target, inverse_mass):
        del rng_key, inverse_mass
        return blackjax.mala.init(position, target.logdensity_fn)

    def step(rng_key, state, target, step_size, inverse_mass):
        del inverse_mass
        new, info = kernel(rng_key, state, target.logdensity_fn, step_size)
        # BlackJAX's MALA maps a NaN proposal to acceptance 0 and reports no energy
        # error; an acceptance of exactly 0 (a non-finite proposal, or an error of
        # over ~100 nats, past float32's exp range) is our divergence.
        return _guard(state, new, info.acceptance_rate, info.acceptance_rate == 0.0)

    return LevelKernel("mala", True, 0.57, init, step, lambda s: s.position, lambda s: s.logdensity)


def _hmc_kernel(
    divergence_threshold: float, num_integration_steps: int = 3, **unused: Any
) -> LevelKernel:
    del unused
    kernel = blackjax.hmc.build_kernel(divergence_threshold=divergence_threshold)

    def init(rng_key, position, target, inverse_mass):
        del rng_key, inverse_mass
        return blackjax.hmc.init(position, target.logdensity_fn)

    def step(rng_key, state, target, step_size, inverse_mass):
        inverse_mass_matrix = jnp.broadcast_to(inverse_mass, state.position.shape)
        new, info = kernel(
            rng_key,
            state,
            target.logdensity_fn,
            step_size,
            inverse_mass_matrix,
            num_integration_steps,
        )
        return _guard(state, new, info.acceptance_rate, info.is_divergent)

    return LevelKernel(
        "hmc",
        True,
        0.65,
        init,
        step,
        lambda s: s.position,
        lambda s: s.logdensity,
    )


def _ula_kernel(**unused: Any) -> LevelKernel:
    del unused
    kernel = ula.build_kernel()

    def init(rng_key, position, target, inverse_mass):
        del rng_key, inverse_mass
        return ula.init(position, target.logdensity_grad_fn)

    def step(rng_key, state, target, step_size, inverse_mass):
        del inverse_mass
        new, info = kernel(rng_key, state, target.logdensity_grad_fn, step_size)
        return new, StepInfo(jnp.where(info.is_divergent, 0.0, 1.0), info.is_divergent)

    return LevelKernel("ula", False, None, init, step, lambda s: s.position)


def _uhmc_kernel(num_integration_steps: int = 3, damping: float = 0.5, **unused: Any):
    del unused
    kernel = uhmc.build_kernel(num_integration_steps, damping)

    def init(rng_key, position, target, inverse_mass):
        return uhmc.init(rng_key, position, target.logdensity_grad_fn, inverse_mass)

    def step(rng_key, state, target, step_size, inverse_mass):
        new, info = kernel(rng_key, state, target.logdensity_grad_fn, step_size, inverse_mass)
        return new, StepInfo(jnp.where(info.is_divergent, 0.0, 1.0), info.is_divergent)

    return LevelKernel("uhmc", False, None, init, step, lambda s: s.position)


KERNELS: dict[str, Callable[..., LevelKernel]] = {
    "ula": _ula_kernel,
    "uhmc": _uhmc_kernel,
    "mala": _mala_kernel,
    "hmc": _hmc_kernel,
}


def get_kernel(name: str, **options: Any) -> LevelKernel:
    """The :class:`LevelKernel` called ``name`` (``"ula"``, ``"uhmc"``, ``"mala"``, ``"hmc"``)."""
    if name not in KERNELS:
        raise ValueError(
            f"unknown kernel {name!r}; valid kernels are {', '.join(sorted(KERNELS))}."
        )
    return KERNELS[name](**options)
