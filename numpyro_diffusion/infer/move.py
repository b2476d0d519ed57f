"""The per-level move of annealed samplers: predictor, step-size adaptation, kernel steps.

One chain, pure functions in BlackJAX's shape: :func:`build_move` returns
``init(position, step_size) -> MoveState`` and ``step(rng_key, state, level) ->
(MoveState, MoveInfo)``; batching over chains is the caller's ``jax.vmap``.
Annealed MCMC scans the move over levels; annealed SMC uses it as its mutation.

At a level ``t`` entered from ``t_prev``: optionally one reverse-diffusion predictor
step (:func:`ddpm_predictor`), then ``num_steps`` kernel steps targeting ``U(., t)``,
the first ``num_adapt_steps`` of them adapting the chain's step size by dual
averaging toward the kernel's target acceptance. With ``precondition``, every chain
at the level shares a diagonal preconditioner estimated from all of them
(:func:`chain_preconditioner`); the step must then be ``jax.vmap``-ped with
``axis_name=CHAIN_AXIS``, and step sizes are in units of each coordinate's scale.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from blackjax.adaptation.step_size import (
    DualAveragingAdaptationState,
    dual_averaging_adaptation,
    find_reasonable_step_size,
)
from jax import Array
from jax.scipy.stats import norm

from numpyro_diffusion.infer.jump import build_jump
from numpyro_diffusion.infer.kernels import LevelKernel, LevelTarget
from numpyro_diffusion.schedules import VPSchedule

__all__ = [
    "LevelPotential",
    "MoveSettings",
    "LevelParams",
    "MoveState",
    "MoveInfo",
    "Move",
    "Entry",
    "build_move",
    "ddpm_predictor",
    "chain_preconditioner",
    "likelihood_guidance",
    "START_RULES",
    "CHAIN_AXIS",
]

PREDICTORS = (None, "ddpm", "guided")
START_RULES = ("previous", "given")
CHAIN_AXIS = "chain"  # the vmap axis of the chains, for moves that pool them
PRIOR_CHAINS = 10.0  # the preconditioner's shrinkage toward unit mass, in chains
_MEAN_LOG_ABS_NORMAL = -0.6351814  # E[log |z|] for z ~ N(0, 1): -(euler_gamma + log 2) / 2


class LevelPotential(NamedTuple):
    """A model's potential at every level, over one chain's flat latent ``(D,)``.

    ``potential_fn(z, t) -> U`` (``-log p_t`` up to a constant; unused when
    ``has_energy`` is false), ``grad_fn(z, t) -> grad U``, ``diffusion_grad_fn(z,
    t)``, the gradient of the diffusion terms alone (the part of ``U`` that changes
    with ``t``) and ``other_grad_fn(z, t)``, that of every other term (observations,
    factors, other priors); ``diffusion_mask`` ``(D,)`` marks the entries of
    diffusion priors.
    """

    potential_fn: Callable[[Array, Array], Array]
    grad_fn: Callable[[Array, Array], Array]
    diffusion_grad_fn: Callable[[Array, Array], Array]
    other_grad_fn: Callable[[Array, Array], Array]
    diffusion_mask: Array
    schedule: VPSchedule
    has_energy: bool
    # the value of every term but the diffusion sites (exact), and the flat latent to
    # the dict of unconstrained site values: what a jump needs (infer/jump.py)
    other_potential_fn: Callable[[Array, Array], Array] | None = None
    unravel_fn: Callable[[Array], dict] | None = None

    def target(self, t: Array) -> LevelTarget:
        """The kernel's target at level ``t``: ``log p_t = -U(., t)`` and its gradient."""
        return LevelTarget(lambda z: -self.potential_fn(z, t), lambda z: -self.grad_fn(z, t))


class MoveSettings(NamedTuple):
    """What a move does at every level (static: part of the compiled program)."""

    num_steps: int  # kernel steps per level
    num_adapt_steps: int = 0  # of which the first adapt the step size
    predictor: str | None = "ddpm"  # "ddpm", "guided" or None
    start_rule: str = "previous"  # adaptation starts from the previous level's size
    search_first_step: bool = False  # BlackJAX's step-size search at the first level
    target_accept: float = 0.65
    adapt_gamma: float = 0.5
    precondition: bool = False  # a diagonal mass from all chains (vmap over CHAIN_AXIS)
    weigh: bool = False  # importance weights even without kernel steps (costs U(z, t))
    jump: Callable | None = None  # an involution of the site values (infer/jump.py)
    jump_points: int = 6  # Gauss-Lobatto points of a jump's score line integral


class LevelParams(NamedTuple):
    """One level of a walk (the scanned-over input; scalars)."""

    t: Array  # the level
    t_prev: Array  # the previous level (equal to t at the first level: no predictor)
    step_size: Array  # the level's step size, or its adaptation start
    inverse_mass: Array  # scalar inverse mass (times the preconditioner when there is one)
    jump: Any = False  # bool: a jump is proposed on entering the level


class MoveState(NamedTuple):
    position: Array  # [D]
    step_size: Array  # [] the step size the last level ended with
    kernel_state: Any  # the kernel's state at the end of the last level (zeros before)
    inverse_mass: Array  # [D] the last level's diagonal inverse mass
    potential: Array  # [] U(position, t) at the end of the last level (NaN before, or unknown)


class MoveInfo(NamedTuple):
    step_size: Array  # [] the step size of the level's sampling steps
    acceptance_rate: Array  # [] mean over the sampling steps (adaptation steps if none)
    num_divergent: Array  # [] int: divergent sampling steps and a non-finite predictor
    potential: Array  # [] U(z, t) at the end of the level; NaN without an energy
    predictor_log_prob: Array  # [] log q of the predictor's proposal (0 without one)
    last_acceptance: Array  # [] the last kernel step's acceptance
    last_divergent: Array  # [] bool: the last kernel step diverged
    last_energy: Array  # [] the Hamiltonian after the last step (HMC; NaN otherwise)
    log_weight: Array  # [] the level's incremental importance weight (NaN where unknown)
    jump_accepted: Any = float("nan")  # [] 1 or 0 for the level's jump (NaN without one)


class Entry(NamedTuple):
    """What entering a level gives (see :func:`build_move`'s ``enter``)."""

    log_weight: Array  # [] the incremental importance weight (0 at the first level)
    predictor_log_prob: Array  # [] log q of the predictor's proposal (0 without one)
    predictor_divergent: Array  # [] bool: the predictor's proposal was not finite
    jump_accepted: Any = float("nan")  # [] 1 or 0 for the level's jump (NaN without one)


class Move(NamedTuple):
    """``step = mutate . enter``; a sequential Monte Carlo sampler weighs and resamples
    between the two."""

    init: Callable[[Array, Array, LevelParams], MoveState]
    step: Callable[[Array, MoveState, LevelParams], tuple[MoveState, MoveInfo]]
    draw: Callable[[Array, MoveState, LevelParams], tuple[MoveState, Any]]
    enter: Callable[[Array, MoveState, LevelParams], tuple[MoveState, Entry]]
    mutate: Callable[[Array, MoveState, LevelParams], tuple[MoveState, MoveInfo]]


def ddpm_predictor(
    rng_key: Array,
    position: Array,
    t_prev: Array,
    t: Array,
    eps: Array,
    schedule: VPSchedule,
    mask: Array,
    guidance: Callable[[Array, Array], Array] | None = None,
) -> tuple[Array, Array]:
    """One ancestral step of the masked entries from ``t_prev`` down to ``t``.

    ``eps`` ``(D,)`` is the noise prediction at ``(position, t_prev)``. With
    ``guidance(mean, var) -> shift`` ``(D,)`` the transition's mean moves by
    ``shift``. Returns the proposal ``(D,)`` (unmasked entries unchanged) and its
    log-density under the Gaussian transition, a scalar, so a sequential Monte Carlo
    sampler can weight it.
    """
    mean, var = schedule.ddpm_transition(position, eps, t_prev, t)
    if guidance is not None:
        mean = mean + jnp.where(mask, guidance(mean, var), 0.0)
    noise = jax.random.normal(rng_key, position.shape)
    proposal = jnp.where(mask, mean + jnp.sqrt(var) * noise, position)
    log_q = jnp.sum(jnp.where(mask, norm.logpdf(proposal, mean, jnp.sqrt(var)), 0.0))
    return proposal, log_q


def likelihood_guidance(
    other_grad_fn: Callable[[Array], Array], mean: Array, var: Array, mask: Array
) -> Array:
    """The shift of an ancestral step's mean toward the non-diffusion terms
    (observations, factors) of the level's target: ``var g / (1 + var k)``.

    ``g`` is their log-density gradient at ``mean`` on the masked entries, ``k >= 0``
    their curvature along ``g`` (a difference of gradients a tenth of the step's
    standard deviation away). The product of the Gaussian step ``N(mean, var)`` and a
    Gaussian likelihood along ``g`` has exactly this mean; for a sharp likelihood the
    shift is a Newton step, not ``var g``, which overshoots by ``var k``.
    """
    g = jnp.where(mask, -other_grad_fn(mean), 0.0)
    norm_g = jnp.sqrt(jnp.sum(g * g))
    u = g / jnp.maximum(norm_g, 1e-30)
    delta = 0.1 * jnp.sqrt(var)
    g_ahead = jnp.where(mask, -other_grad_fn(mean + delta * u), 0.0)
    curvature = jnp.maximum(jnp.sum((g - g_ahead) * u) / jnp.maximum(delta, 1e-30), 0.0)
    return var * g / (1.0 + var * curvature)


def chain_preconditioner(position: Array, gradient: Array, axis_name: str) -> Array:
    """A diagonal inverse mass ``(D,)`` for one level, pooled over the chains.

    Called on one chain's ``position`` and log-density ``gradient`` ``(D,)`` inside
    ``jax.vmap(..., axis_name=axis_name)``. Coordinate ``i``'s squared scale is the
    smaller of the chains' spread ``Var[x_i]`` and a local scale from the gradients,
    ``s_i`` with ``log s_i = E[log |z|] - mean log |g_i|`` (``z ~ N(0, 1)``: exact for a
    Gaussian of scale ``s``, and a geometric mean, so a few chains in a steep tail do
    not set every chain's scale). The gradient term stays local when the chains sit
    in separate narrow modes; the spread caps it where the density is flat. Non-finite
    chains are left out; with few chains the estimate is shrunk toward 1 (in log
    scale, by ``n / (n + PRIOR_CHAINS)``).
    """
    finite = jnp.isfinite(position) & jnp.isfinite(gradient)
    w = finite.astype(position.dtype)
    n = jax.lax.psum(w, axis_name)
    safe_n = jnp.maximum(n, 1.0)
    x = jnp.where(finite, position, 0.0)
    log_g = jnp.where(finite, jnp.log(jnp.maximum(jnp.abs(gradient), 1e-12)), 0.0)
    mean = jax.lax.psum(x, axis_name) / safe_n
    spread = jax.lax.psum(w * (x - mean) ** 2, axis_name) / jnp.maximum(n - 1.0, 1.0)
    log_local = 2.0 * (_MEAN_LOG_ABS_NORMAL - jax.lax.psum(log_g, axis_name) / safe_n)
    log_m = jnp.minimum(log_local, jnp.log(spread))
    log_m = jnp.where(jnp.isfinite(log_m) & (n > 1), jnp.clip(log_m, -40.0, 40.0), 0.0)
    return jnp.exp(n / (n + PRIOR_CHAINS) * log_m)


def check_predictor(predictor: str | None) -> None:
    """Raise ``ValueError`` unless ``predictor`` is ``"ddpm"``, ``"guided"`` or ``None``."""
    if predictor not in PREDICTORS:
        raise ValueError(f"unknown predictor {predictor!r}; expected 'ddpm', 'guided' or None.")


def build_move(kernel: LevelKernel, potential: LevelPotential, settings: MoveSettings) -> Move:
    """The per-level move of ``kernel`` on ``potential`` (one chain)."""
    check_predictor(settings.predictor)
    if settings.start_rule not in START_RULES:
        raise ValueError(
            f"unknown start_rule {settings.start_rule!r}; expected one of {START_RULES}."
        )
    if not 0 <= settings.num_adapt_steps <= settings.num_steps:
        raise ValueError(
            f"num_adapt_steps ({settings.num_adapt_steps}) must lie in 0 .. num_steps "
            f"({settings.num_steps})."
        )
    K, K_adapt = settings.num_steps, settings.num_adapt_steps
    schedule = potential.schedule
    da_init, da_update, da_final = dual_averaging_adaptation(
        settings.target_accept, gamma=settings.adapt_gamma
    )
    jump = None
    if settings.jump is not None:
        jump_step = build_jump(potential, settings.jump, settings.jump_points)

        def jump(rng_key, z, level):
            return jax.lax.cond(
                level.jump,
                lambda z: jump_step(rng_key, z, level.t),
                lambda z: (z, jnp.full((), jnp.nan, jnp.float32)),
                z,
            )

    def init(rng_key: Array, position: Array, level: LevelParams) -> MoveState:
        # Every level initialises the kernel at its own target, so the kernel state
        # starts as zeros of the right structure: no network evaluation to compile.
        shapes = jax.eval_shape(
            lambda k, z: kernel.init(k, z, potential.target(level.t), level.inverse_mass),
            rng_key,
            position,
        )
        state = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        inverse_mass = jnp.broadcast_to(level.inverse_mass, position.shape)
        size = jnp.asarray(level.step_size, jnp.float32)
        return MoveState(position, size, state, inverse_mass, jnp.full((), jnp.nan))

    def predict(rng_key, z, level):
        eps = schedule.sigmas[level.t_prev] * potential.diffusion_grad_fn(z, level.t_prev)
        guidance = None
        if settings.predictor == "guided":

            def guidance(mean, var):
                other = lambda x: potential.other_grad_fn(x, level.t)  # noqa: E731
                return likelihood_guidance(other, mean, var, potential.diffusion_mask)

        z_new, log_q = ddpm_predictor(
            rng_key, z, level.t_prev, level.t, eps, schedule, potential.diffusion_mask, guidance
        )
        finite = jnp.all(jnp.isfinite(z_new)) & jnp.isfinite(log_q)
        applies = level.t != level.t_prev
        moved = applies & finite
        # the backward kernel of the weights: forward noising from t back up to t_prev
        mean, var = schedule.forward_transition(z_new, level.t, level.t_prev)
        log_back = jnp.sum(
            jnp.where(potential.diffusion_mask, norm.logpdf(z, mean, jnp.sqrt(var)), 0.0)
        )
        z = jnp.where(moved, z_new, z)
        return z, jnp.where(moved, log_q, 0.0), applies & ~finite, jnp.where(moved, log_back, 0.0)

    def start_step_size(rng_key, state, kstate, target, level, inverse_mass):
        first = level.t == level.t_prev
        if settings.start_rule == "given" or K_adapt == 0:
            size = level.step_size
        elif settings.precondition:  # steps in units of the level's own scales
            size = jnp.where(first, level.step_size, state.step_size)
        else:
            # Near the data the curvature grows like 1 / sigma_t^2, and a few adaptation
            # steps cannot shrink a step size tenfold on their own.
            shrink = jnp.minimum(1.0, schedule.sigmas[level.t] / schedule.sigmas[level.t_prev])
            size = jnp.where(first, level.step_size, state.step_size * shrink)
        if settings.search_first_step:

            def search(size):
                # the entered state under this mass, as init would give it: no second
                # copy of the model's gradient in the compiled program
                start = kernel.remass(rng_key, kstate, inverse_mass)

                def kernel_at(h):
                    return lambda k, s: kernel.step(k, s, target, h, inverse_mass)

                found = find_reasonable_step_size(
                    rng_key, kernel_at, start, size, settings.target_accept
                )
                # One proposal is a noisy guide, and a lucky one can pick a size that
                # diverges: the search only shrinks the start.
                return jnp.minimum(found, size)

            size = jax.lax.cond(first, search, lambda s: s, size)
        return size

    def enter(rng_key: Array, state: MoveState, level: LevelParams) -> tuple[MoveState, Entry]:
        """Enter level ``t``: the predictor step, the kernel state at the new target
        (unit mass), and the level's incremental importance weight."""
        k_pred, k_init = jax.random.split(rng_key)
        z, log_q, predictor_divergent = state.position, jnp.zeros(()), jnp.zeros((), bool)
        log_back = jnp.zeros(())
        if settings.predictor is not None:
            z, log_q, predictor_divergent, log_back = predict(k_pred, z, level)
        jump_accepted = jnp.full((), jnp.nan, jnp.float32)
        if jump is not None:  # (annealed MCMC only: no weights to keep)
            z, jump_accepted = jump(jax.random.fold_in(k_pred, 1), z, level)
        if K == 0 and not settings.weigh:  # reverse diffusion: no kernel, no weight
            entry = Entry(jnp.full((), jnp.nan), log_q, predictor_divergent, jump_accepted)
            return state._replace(position=z, potential=jnp.full((), jnp.nan)), entry
        target = potential.target(level.t)
        inverse_mass = jnp.broadcast_to(level.inverse_mass, z.shape)
        kstate = kernel.init(k_init, z, target, inverse_mass)
        # Sequential importance weight of the level (Del Moral et al.'s SMC sampler with
        # the forward noising as backward kernel; annealed importance sampling without
        # a predictor): U_prev(z_old) - U_t(z) + log L(z_old | z) - log q(z | z_old).
        # The kernel steps that follow leave U_t invariant and add nothing.
        if kernel.logdensity is not None:
            u_start = -kernel.logdensity(kstate)
        elif potential.has_energy and settings.weigh:
            u_start = potential.potential_fn(z, level.t)
        else:
            u_start = jnp.full((), jnp.nan)
        first = level.t == level.t_prev
        log_weight = jnp.where(first, 0.0, state.potential - u_start + log_back - log_q)
        entered = MoveState(z, state.step_size, kstate, inverse_mass, u_start)
        return entered, Entry(log_weight, log_q, predictor_divergent, jump_accepted)

    def mutate(rng_key: Array, state: MoveState, level: LevelParams) -> tuple[MoveState, MoveInfo]:
        """The kernel steps at level ``t`` from a state :func:`enter` returned (its
        kernel state at unit mass): preconditioning, adaptation, sampling steps."""
        if K == 0:
            info = MoveInfo(
                level.step_size,
                jnp.nan,
                jnp.zeros((), jnp.int32),
                state.potential,
                jnp.zeros(()),
                jnp.nan,
                jnp.zeros((), bool),
                jnp.nan,
                jnp.full((), jnp.nan),
            )
            return state, info
        k_steps, k_search, k_mass = jax.random.split(rng_key, 3)
        z, kstate, inverse_mass = state.position, state.kernel_state, state.inverse_mass
        target = potential.target(level.t)
        if settings.precondition:
            pooled = chain_preconditioner(z, kernel.gradient(kstate), CHAIN_AXIS)
            inverse_mass = inverse_mass * pooled
            kstate = kernel.remass(k_mass, kstate, inverse_mass)
        size = start_step_size(k_search, state, kstate, target, level, inverse_mass)
        # Adaptation and sampling steps are one scan over the K steps (step j adapts
        # while j < K_adapt): one copy of the kernel step, and of the model's gradient,
        # in the compiled program instead of two.
        da: DualAveragingAdaptationState = da_init(size)._replace(mu=jnp.log(size))

        def finish_adaptation(da):
            size = da_final(da)
            if settings.precondition:
                # No chain steps further than the chains' typical (geometric mean) size:
                # a chain that adapted where the density is flat diverges where it is
                # sharp (a noise scale's funnel), and the pooled mass already sets scales.
                typical = jnp.exp(jax.lax.pmean(jnp.log(size), CHAIN_AXIS))
                size = jnp.minimum(size, typical)
            return size

        def body(carry, j):
            kstate, da, size = carry
            adapting = j < K_adapt
            h = jnp.where(adapting, jnp.exp(da.log_step_size), size)
            kstate, info = kernel.step(
                jax.random.fold_in(k_steps, j), kstate, target, h, inverse_mass
            )
            if K_adapt > 0:
                updated = da_update(da, info.acceptance_rate)
                da = jax.tree.map(lambda new, old: jnp.where(adapting, new, old), updated, da)
                # a cond on the (unbatched) step index: the chains' pooled cap is one
                # collective per level, not one per step
                size = jax.lax.cond(j == K_adapt - 1, finish_adaptation, lambda _: size, da)
            return (kstate, da, size), info

        (kstate, _, size), infos = jax.lax.scan(body, (kstate, da, size), jnp.arange(K))
        adapt_accept = jnp.mean(infos.acceptance_rate[:K_adapt]) if K_adapt else jnp.nan
        if K > K_adapt:
            sampled = jax.tree.map(lambda a: a[K_adapt:], infos)
            accept = jnp.mean(sampled.acceptance_rate)
            num_divergent = jnp.sum(sampled.is_divergent)
            last = (sampled.acceptance_rate[-1], sampled.is_divergent[-1], sampled.energy[-1])
        else:
            accept, num_divergent = adapt_accept, jnp.zeros((), jnp.int32)
            last = (adapt_accept, jnp.zeros((), bool), jnp.full((), jnp.nan))
        z = kernel.position(kstate)
        if kernel.logdensity is not None:  # the state has it: no extra evaluation
            u = -kernel.logdensity(kstate)
        elif potential.has_energy:
            u = potential.potential_fn(z, level.t)
        else:
            u = jnp.nan
        info = MoveInfo(size, accept, num_divergent, u, jnp.zeros(()), *last, jnp.full((), jnp.nan))
        return MoveState(z, size, kstate, inverse_mass, u), info

    def step(rng_key: Array, state: MoveState, level: LevelParams) -> tuple[MoveState, MoveInfo]:
        """:func:`enter` then :func:`mutate`: the whole move at one level."""
        k_enter, k_mutate = jax.random.split(rng_key)
        state, entry = enter(k_enter, state, level)
        state, info = mutate(k_mutate, state, level)
        return state, info._replace(
            num_divergent=info.num_divergent + entry.predictor_divergent,
            predictor_log_prob=entry.predictor_log_prob,
            log_weight=entry.log_weight,
            jump_accepted=entry.jump_accepted,
        )

    def draw(rng_key: Array, state: MoveState, level: LevelParams) -> tuple[MoveState, Any]:
        """One more kernel step at the level (fixed step size): a further draw."""
        kstate, info = kernel.step(
            rng_key,
            state.kernel_state,
            potential.target(level.t),
            state.step_size,
            state.inverse_mass,
        )
        return state._replace(position=kernel.position(kstate), kernel_state=kstate), info

    return Move(init, step, draw, enter, mutate)
