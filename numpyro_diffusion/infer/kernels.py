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

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
from blackjax.mcmc import diffusions, proposal
from blackjax.mcmc.hmc import HMCState
from blackjax.mcmc.mala import MALAState
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
    """Unadjusted Langevin: ``x <- x + h m grad log p(x) + sqrt(2 h m) xi``.

    ``inverse_mass`` ``m`` (the preconditioner) is a scalar or a ``(D,)`` diagonal.
    """

    @staticmethod
    def init(position: Array, logdensity_grad_fn: Callable) -> ULAState:
        return ULAState(position, logdensity_grad_fn(position))

    @staticmethod
    def build_kernel() -> Callable:
        def kernel(
            rng_key: Array,
            state: ULAState,
            logdensity_grad_fn: Callable,
            step_size: float,
            inverse_mass: Any = 1.0,
        ) -> tuple[ULAState, ULAInfo]:
            noise = jax.random.normal(rng_key, state.position.shape)
            x = state.position + step_size * inverse_mass * state.logdensity_grad
            x = x + jnp.sqrt(2.0 * step_size * inverse_mass) * noise
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
    energy: Array  # [] the Hamiltonian after the step (HMC; NaN for other kernels)


class LevelKernel(NamedTuple):
    """A kernel in the annealed sampler's convention, with its own defaults.

    ``init(rng_key, position, target, inverse_mass) -> state``;
    ``step(rng_key, state, target, step_size, inverse_mass) -> (state, StepInfo)``,
    where ``inverse_mass`` is a scalar or a ``(D,)`` diagonal (the preconditioner:
    the kernel moves coordinate ``i`` as it would move ``x_i / sqrt(m_i)`` with unit
    mass); ``position(state) -> (D,)``; ``gradient(state) -> (D,)``, the gradient of
    the log-density at the position; ``logdensity(state) -> ()`` for kernels whose
    state carries the log-density (``None`` otherwise); ``remass(rng_key, state,
    inverse_mass) -> state``, the state as ``init`` would give it under another mass
    (momentum kernels redraw the momentum; no gradient is evaluated);
    ``gradient_evaluations``, the model gradients one transition costs (for equal
    budgets across kernels).

    Defaults: ``target_accept`` of step-size adaptation (``None``: no acceptance to
    adapt to); ``initial_step_size``, the first level's start of adaptation;
    ``sigma_rule = (factor, power)``, the ``"sigma"`` step ``factor * sigma_t **
    power`` (Langevin steps move positions by about ``sqrt(2 h)``, leapfrog steps by
    ``h``, so they scale with the variance and the standard deviation); ``beta_rule =
    (factor, beta_mass)``, Du et al.'s image-code step ``factor * beta_t`` with mass
    ``beta_t`` when ``beta_mass``; ``num_integration_steps`` per transition (1 for
    Langevin kernels); ``standard_step_size``, the ``"sigma"`` rule's step when the
    kernel is preconditioned (in units of each coordinate's scale).
    """

    name: str
    needs_energy: bool
    init: Callable
    step: Callable
    target_accept: float | None
    initial_step_size: float
    sigma_rule: tuple[float, int]
    beta_rule: tuple[float, bool]
    num_integration_steps: int = 1
    standard_step_size: float = 0.1
    position: Callable[[Any], Array] = lambda state: state.position
    gradient: Callable[[Any], Array] = lambda state: state.logdensity_grad
    logdensity: Callable[[Any], Array] | None = None
    remass: Callable[[Array, Any, Array], Any] = lambda rng_key, state, inverse_mass: state
    gradient_evaluations: int = 1  # network gradients per transition

    @property
    def adaptable(self) -> bool:
        return self.target_accept is not None

    def rule_step_sizes(
        self, rule: str, schedule: Any, levels: Any, preconditioned: bool = False
    ) -> tuple[Any, Any]:
        """Step sizes and inverse masses ``(L,)`` of the rule ``"sigma"`` or ``"beta"``.

        ``preconditioned``: steps in units of each coordinate's scale at its level
        (the preconditioner's), where the ``"sigma"`` rule's ``sigma_t ** power``, the
        scale of a diffusion coordinate, is already accounted for: the step is
        ``standard_step_size`` at every level.
        """
        levels = np.asarray(levels)
        if preconditioned and rule == "beta":
            raise ValueError(
                "the 'beta' step rule fixes its own mass (beta_t) and cannot be combined with "
                "preconditioning; use precondition=False with step_size='beta'."
            )
        betas = np.asarray(schedule.betas)[levels]
        inverse_mass = np.ones_like(betas)
        if rule == "beta":
            factor, beta_mass = self.beta_rule
            steps = factor * betas
            if beta_mass:
                inverse_mass = 1.0 / betas
        elif rule == "sigma":
            factor, power = self.sigma_rule
            sigmas = np.asarray(schedule.sigmas)[levels]
            if preconditioned:
                steps = np.full_like(sigmas, self.standard_step_size)
            else:
                steps = factor * sigmas**power
        else:
            raise ValueError(f"unknown step-size rule {rule!r}; expected 'sigma' or 'beta'.")
        return steps.astype(np.float32), inverse_mass.astype(np.float32)


def _logdensity(state: Any) -> Array:
    return state.logdensity


def _guard(old, new, info_accept, info_divergent, energy=jnp.nan):
    """Reject a non-finite accepted state and count NaN acceptance as a divergence."""
    finite_accept = jnp.isfinite(info_accept)
    ok = _all_finite(new.position, new.logdensity, new.logdensity_grad)
    divergent = info_divergent | ~finite_accept | ~ok
    state = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)
    accept = jnp.where(finite_accept & ok, info_accept, 0.0)
    return state, StepInfo(accept, divergent, jnp.asarray(energy, jnp.float32))


ENERGIES = (None, "line_integral")


def line_integral(
    grad_fn: Callable[[Array], Array],
    x0: Array,
    x1: Array,
    g0: Array,
    g1: Array,
    num_points: int,
) -> Array:
    """``log p(x1) - log p(x0)`` from the gradient ``g = grad log p`` alone: the
    integral of ``g(x0 + s (x1 - x0)) . (x1 - x0)`` over ``s`` in ``[0, 1]``.

    Gauss-Lobatto quadrature on ``num_points`` points including the ends, whose
    gradients ``g0`` and ``g1`` are given: 2 is the trapezoid rule (exact for a
    Gaussian, no new gradient), 3 Simpson's; ``n`` points are exact for polynomial
    log-densities of degree ``2n - 2``.
    """
    d = x1 - x0
    ends = jnp.stack([jnp.vdot(g0, d), jnp.vdot(g1, d)])
    nodes, weights = _lobatto(num_points)
    if num_points == 2:
        return 0.5 * jnp.sum(ends)
    inner = jax.vmap(lambda si: jnp.vdot(grad_fn(x0 + si * d), d))(jnp.asarray(nodes[1:-1]))
    values = jnp.concatenate([ends[:1], inner, ends[1:]])
    return jnp.sum(jnp.asarray(weights, values.dtype) * values)


@functools.cache
def _lobatto(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Lobatto nodes and weights on ``[0, 1]`` (``n >= 2``, ends included)."""
    legendre = np.polynomial.legendre.Legendre.basis(n - 1)
    inner = np.sort(legendre.deriv().roots().real) if n > 2 else np.zeros(0)
    x = np.concatenate([[-1.0], inner, [1.0]])
    w = 2.0 / (n * (n - 1) * legendre(x) ** 2)
    return (x + 1.0) / 2.0, w / 2.0


def _check_energy(energy: str | None, line_integral_points: int | None) -> int | None:
    """The number of line-integral points for ``energy="line_integral"`` (else None)."""
    if energy not in ENERGIES:
        raise ValueError(f"unknown energy {energy!r}; expected None or 'line_integral'.")
    if energy is None:
        return None
    points = 3 if line_integral_points is None else line_integral_points
    if isinstance(points, bool) or not isinstance(points, (int, np.integer)) or points < 2:
        raise ValueError(f"line_integral_points must be an integer >= 2, got {points!r}.")
    return int(points)


def _mala_kernel(
    divergence_threshold: float = 1000.0,
    energy: str | None = None,
    line_integral_points: int | None = None,
    **unused: Any,
) -> LevelKernel:
    """BlackJAX's MALA pieces (Langevin integrator, asymmetric acceptance ratio,
    binomial sampling) with the log acceptance ratio kept: ``-log_ratio`` is the
    energy error, a divergence above ``divergence_threshold`` as for HMC.

    With ``energy="line_integral"`` the model's energy is never evaluated: the
    state's log-density is relative (0 where a level starts), and each proposal's
    is the current one plus the :func:`line_integral` of the gradient.
    """
    del unused
    points = _check_energy(energy, line_integral_points)
    acceptance_ratio = proposal.compute_asymmetric_acceptance_ratio(_mala_transition_energy)

    def init(rng_key, position, target, inverse_mass):
        del rng_key, inverse_mass
        if points is not None:
            return MALAState(position, jnp.zeros(()), target.logdensity_grad_fn(position))
        return blackjax.mala.init(position, target.logdensity_fn)

    def integrate(rng_key, state, logdensity_fn, grad_fn, step_size):
        if points is None:
            integrator = diffusions.overdamped_langevin(jax.value_and_grad(logdensity_fn))
            return MALAState(*integrator(rng_key, state, step_size))
        noise = jax.random.normal(rng_key, state.position.shape)
        x = state.position + step_size * state.logdensity_grad + jnp.sqrt(2 * step_size) * noise
        g = grad_fn(x)
        change = line_integral(grad_fn, state.position, x, state.logdensity_grad, g, points)
        return MALAState(x, state.logdensity + change, g)

    def standard_step(rng_key, state, logdensity_fn, grad_fn, step_size):
        key_integrator, key_accept = jax.random.split(rng_key)
        new = integrate(key_integrator, state, logdensity_fn, grad_fn, step_size)
        log_ratio = acceptance_ratio(state, new, step_size=step_size)
        accepted, (do_accept, p_accept, _) = proposal.static_binomial_sampling(
            key_accept, log_ratio, state, new
        )
        divergent = ~(-log_ratio <= divergence_threshold)  # NaN counts
        return accepted, do_accept, p_accept, divergent

    def step(rng_key, state, target, step_size, inverse_mass):
        # Preconditioned MALA is MALA on y = x / sqrt(m): BlackJAX's kernel runs there.
        scale = jnp.sqrt(jnp.broadcast_to(inverse_mass, state.position.shape))
        standard = MALAState(
            state.position / scale, state.logdensity, state.logdensity_grad * scale
        )
        accepted, do_accept, p_accept, divergent = standard_step(
            rng_key,
            standard,
            lambda y: target.logdensity_fn(y * scale),
            lambda y: target.logdensity_grad_fn(y * scale) * scale,
            step_size,
        )
        moved = MALAState(
            accepted.position * scale, accepted.logdensity, accepted.logdensity_grad / scale
        )
        new = jax.tree.map(lambda a, b: jnp.where(do_accept, a, b), moved, state)
        return _guard(state, new, p_accept, divergent)

    return LevelKernel(
        "mala",
        points is None,
        init,
        step,
        target_accept=0.57,
        initial_step_size=0.5,
        sigma_rule=(0.05, 2),
        beta_rule=(0.035, False),
        standard_step_size=0.5,
        logdensity=_logdensity if points is None else None,
        gradient_evaluations=1 if points is None else points - 1,
    )


def _mala_transition_energy(state, new_state, step_size):
    """``-log p(new) - log q(state | new)`` up to constants, for MALA's proposal."""
    theta = state.position - new_state.position - step_size * new_state.logdensity_grad
    return -new_state.logdensity + 0.25 / step_size * jnp.sum(theta * theta)


def _hmc_kernel(
    divergence_threshold: float = 1000.0,
    num_integration_steps: int = 3,
    energy: str | None = None,
    line_integral_points: int | None = None,
    **unused: Any,
) -> LevelKernel:
    """BlackJAX's HMC; with ``energy="line_integral"`` the same leapfrog and
    Metropolis test with the energy change integrated from the gradients along the
    leapfrog path: ``line_integral_points`` per leapfrog step (default 4), whose ends
    are the gradients the leapfrog computes anyway (2 points, the trapezoid, is exact
    only for a Gaussian; on long steps between modes it biases the mode weights)."""
    del unused
    if energy is not None and line_integral_points is None:
        line_integral_points = 4
    points = _check_energy(energy, line_integral_points)
    kernel = blackjax.hmc.build_kernel(divergence_threshold=divergence_threshold)

    def init(rng_key, position, target, inverse_mass):
        del rng_key, inverse_mass
        if points is not None:
            return HMCState(position, jnp.zeros(()), target.logdensity_grad_fn(position))
        return blackjax.hmc.init(position, target.logdensity_fn)

    def step(rng_key, state, target, step_size, inverse_mass):
        inverse_mass_matrix = jnp.broadcast_to(inverse_mass, state.position.shape)
        if points is not None:
            return _line_integral_hmc_step(
                rng_key,
                state,
                target.logdensity_grad_fn,
                step_size,
                inverse_mass_matrix,
                num_integration_steps,
                points,
                divergence_threshold,
            )
        new, info = kernel(
            rng_key,
            state,
            target.logdensity_fn,
            step_size,
            inverse_mass_matrix,
            num_integration_steps,
        )
        # the Hamiltonian of the state kept (BlackJAX reports the proposal's)
        kinetic = 0.5 * jnp.sum(info.momentum**2 * inverse_mass_matrix)
        energy = jnp.where(info.is_accepted, info.energy, -state.logdensity + kinetic)
        return _guard(state, new, info.acceptance_rate, info.is_divergent, energy)

    return LevelKernel(
        "hmc",
        points is None,
        init,
        step,
        # A few adaptation steps per chain leave some chains' steps too large where
        # the curvature changes fast (a latent noise scale): aim higher than 0.65.
        target_accept=0.8,
        initial_step_size=0.3,
        sigma_rule=(0.1, 1),
        beta_rule=(0.1, True),
        num_integration_steps=num_integration_steps,
        standard_step_size=0.3,
        logdensity=_logdensity if points is None else None,
        gradient_evaluations=num_integration_steps * (1 if points is None else points - 1),
    )


def _line_integral_hmc_step(
    rng_key, state, grad_fn, step_size, inverse_mass, num_steps, points, divergence_threshold
):
    """One HMC transition whose energy change is integrated along the leapfrog path."""
    k_momentum, k_accept = jax.random.split(rng_key)
    p0 = jax.random.normal(k_momentum, state.position.shape) / jnp.sqrt(inverse_mass)

    def leapfrog(carry, _):
        x, p, g, change = carry
        p = p + 0.5 * step_size * g
        x_new = x + step_size * inverse_mass * p
        g_new = grad_fn(x_new)
        change = change + line_integral(grad_fn, x, x_new, g, g_new, points)
        return (x_new, p + 0.5 * step_size * g_new, g_new, change), None

    (x, p, g, change), _ = jax.lax.scan(
        leapfrog, (state.position, p0, state.logdensity_grad, jnp.zeros(())), None, num_steps
    )
    kinetic0 = 0.5 * jnp.sum(inverse_mass * p0**2)
    kinetic1 = 0.5 * jnp.sum(inverse_mass * p**2)
    energy_error = kinetic1 - kinetic0 - change
    divergent = ~(energy_error <= divergence_threshold)  # NaN counts
    p_accept = jnp.where(divergent, 0.0, jnp.minimum(1.0, jnp.exp(-energy_error)))
    accept = jax.random.uniform(k_accept) < p_accept
    proposed = HMCState(x, state.logdensity + change, g)
    new = jax.tree.map(lambda a, b: jnp.where(accept, a, b), proposed, state)
    energy = jnp.where(accept, -proposed.logdensity + kinetic1, -state.logdensity + kinetic0)
    return _guard(state, new, p_accept, divergent, energy)


def _unadjusted(state: Any, info: Any) -> tuple[Any, StepInfo]:
    """An unadjusted kernel's step in the common convention: 'accepted' unless divergent."""
    accept = jnp.where(info.is_divergent, 0.0, 1.0)
    return state, StepInfo(accept, info.is_divergent, jnp.full((), jnp.nan, jnp.float32))


def _ula_kernel(**unused: Any) -> LevelKernel:
    del unused
    kernel = ula.build_kernel()

    def init(rng_key, position, target, inverse_mass):
        del rng_key, inverse_mass
        return ula.init(position, target.logdensity_grad_fn)

    def step(rng_key, state, target, step_size, inverse_mass):
        return _unadjusted(
            *kernel(rng_key, state, target.logdensity_grad_fn, step_size, inverse_mass)
        )

    return LevelKernel(
        "ula",
        False,
        init,
        step,
        target_accept=None,
        initial_step_size=1e-3,
        sigma_rule=(0.05, 2),
        beta_rule=(2.0, False),
    )


def _uhmc_kernel(num_integration_steps: int = 3, damping: float = 0.5, **unused: Any):
    del unused
    kernel = uhmc.build_kernel(num_integration_steps, damping)

    def init(rng_key, position, target, inverse_mass):
        return uhmc.init(rng_key, position, target.logdensity_grad_fn, inverse_mass)

    def remass(rng_key, state, inverse_mass):
        momentum = jax.random.normal(rng_key, state.position.shape) / jnp.sqrt(inverse_mass)
        return state._replace(momentum=momentum)

    def step(rng_key, state, target, step_size, inverse_mass):
        return _unadjusted(
            *kernel(rng_key, state, target.logdensity_grad_fn, step_size, inverse_mass)
        )

    return LevelKernel(
        "uhmc",
        False,
        init,
        step,
        target_accept=None,
        initial_step_size=3e-2,
        sigma_rule=(0.1, 1),
        beta_rule=(0.1, True),
        num_integration_steps=num_integration_steps,
        remass=remass,
    )


KERNELS: dict[str, Callable[..., LevelKernel]] = {
    "ula": _ula_kernel,
    "uhmc": _uhmc_kernel,
    "mala": _mala_kernel,
    "hmc": _hmc_kernel,
}


def get_kernel(name: str, **options: Any) -> LevelKernel:
    """The :class:`LevelKernel` called ``name`` (``"ula"``, ``"uhmc"``, ``"mala"``, ``"hmc"``).

    ``options``: ``divergence_threshold`` (MALA, HMC), ``num_integration_steps``
    (HMC, U-HMC), ``damping`` (U-HMC), ``energy`` and ``line_integral_points`` (MALA,
    HMC: ``energy="line_integral"`` for score-only models); options a kernel does not
    use are ignored, except an ``energy`` for an unadjusted kernel, which has no use
    for one.
    """
    if name not in KERNELS:
        raise ValueError(
            f"unknown kernel {name!r}; valid kernels are {', '.join(sorted(KERNELS))}."
        )
    if options.get("energy") is not None and name not in ("mala", "hmc"):
        raise ValueError(
            f"energy={options['energy']!r} applies to the Metropolis kernels 'mala' and "
            f"'hmc'; '{name}' is unadjusted and works on score-only models as it is."
        )
    return KERNELS[name](**options)
