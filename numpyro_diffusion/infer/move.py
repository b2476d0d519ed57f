"""The per-level move of annealed samplers: predictor, step-size adaptation, kernel steps.

One chain, pure functions in BlackJAX's shape: :func:`build_move` returns
``init(position, step_size) -> MoveState`` and ``step(rng_key, state, level) ->
(MoveState, MoveInfo)``; batching over chains is the caller's ``jax.vmap``.
Annealed MCMC scans the move over levels; annealed SMC uses it as its mutation.

At a level ``t`` entered from ``t_prev``: optionally one reverse-diffusion predictor
step (:func:`ddpm_predictor`), then ``num_steps`` kernel steps targeting ``U(., t)``,
the first ``num_adapt_steps`` of them adapting the chain's step size by dual
averaging toward the kernel's target acceptance.
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

from numpyro_diffusion.infer.kernels import LevelKernel, LevelTarget
from numpyro_diffusion.schedules import VPSchedule

__all__ = [
    "LevelPotential",
    "MoveSettings",
    "LevelParams",
    "MoveState",
    "MoveInfo",
    "Move",
    "build_move",
    "ddpm_predictor",
    "START_RULES",
]

PREDICTORS = (None, "ddpm", "guided")
START_RULES = ("previous", "given")


class LevelPotential(NamedTuple):
    """A model's potential at every level, over one chain's flat latent ``(D,)``.

    ``potential_fn(z, t) -> U`` (``-log p_t`` up to a constant; unused when
    ``has_energy`` is false), ``grad_fn(z, t) -> grad U`` and ``diffusion_grad_fn(z,
    t)``, the gradient of the diffusion terms alone (the part of ``U`` that changes
    with ``t``); ``diffusion_mask`` ``(D,)`` marks the entries of diffusion priors.
    """

    potential_fn: Callable[[Array, Array], Array]
    grad_fn: Callable[[Array, Array], Array]
    diffusion_grad_fn: Callable[[Array, Array], Array]
    diffusion_mask: Array
    schedule: VPSchedule
    has_energy: bool

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


class LevelParams(NamedTuple):
    """One level of a walk (the scanned-over input; scalars)."""

    t: Array  # the level
    t_prev: Array  # the previous level (equal to t at the first level: no predictor)
    step_size: Array  # the level's step size, or its adaptation start
    inverse_mass: Array  # scalar inverse mass (leapfrog kernels)


class MoveState(NamedTuple):
    position: Array  # [D]
    step_size: Array  # [] the step size the last level ended with
    kernel_state: Any  # the kernel's state at the end of the last level (zeros before)


class MoveInfo(NamedTuple):
    step_size: Array  # [] the step size of the level's sampling steps
    acceptance_rate: Array  # [] mean over the sampling steps (adaptation steps if none)
    num_divergent: Array  # [] int: divergent sampling steps and a non-finite predictor
    potential: Array  # [] U(z, t) at the end of the level; NaN without an energy
    predictor_log_prob: Array  # [] log q of the predictor's proposal (0 without one)
    last_acceptance: Array  # [] the last kernel step's acceptance
    last_divergent: Array  # [] bool: the last kernel step diverged


class Move(NamedTuple):
    init: Callable[[Array, Array, LevelParams], MoveState]
    step: Callable[[Array, MoveState, LevelParams], tuple[MoveState, MoveInfo]]
    draw: Callable[[Array, MoveState, LevelParams], tuple[MoveState, Any]]


def ddpm_predictor(
    rng_key: Array,
    position: Array,
    t_prev: Array,
    t: Array,
    eps: Array,
    schedule: VPSchedule,
    mask: Array,
) -> tuple[Array, Array]:
    """One ancestral step of the masked entries from ``t_prev`` down to ``t``.

    ``eps`` ``(D,)`` is the noise prediction at ``(position, t_prev)``. Returns the
    proposal ``(D,)`` (unmasked entries unchanged) and its log-density under the
    Gaussian transition, a scalar, so a sequential Monte Carlo sampler can weight it.
    """
    mean, var = schedule.ddpm_transition(position, eps, t_prev, t)
    noise = jax.random.normal(rng_key, position.shape)
    proposal = jnp.where(mask, mean + jnp.sqrt(var) * noise, position)
    log_q = jnp.sum(jnp.where(mask, norm.logpdf(proposal, mean, jnp.sqrt(var)), 0.0))
    return proposal, log_q


def build_move(kernel: LevelKernel, potential: LevelPotential, settings: MoveSettings) -> Move:
    """The per-level move of ``kernel`` on ``potential`` (one chain)."""
    if settings.predictor not in PREDICTORS:
        raise ValueError(
            f"unknown predictor {settings.predictor!r}; expected 'ddpm', 'guided' or None."
        )
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

    def init(rng_key: Array, position: Array, level: LevelParams) -> MoveState:
        # Every level initialises the kernel at its own target, so the kernel state
        # starts as zeros of the right structure: no network evaluation to compile.
        shapes = jax.eval_shape(
            lambda k, z: kernel.init(k, z, potential.target(level.t), level.inverse_mass),
            rng_key,
            position,
        )
        state = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        return MoveState(position, jnp.asarray(level.step_size, jnp.float32), state)

    def predict(rng_key, z, level):
        if settings.predictor == "guided":
            grad = potential.grad_fn(z, level.t_prev)
        else:
            grad = potential.diffusion_grad_fn(z, level.t_prev)
        eps = schedule.sigmas[level.t_prev] * grad
        z_new, log_q = ddpm_predictor(
            rng_key, z, level.t_prev, level.t, eps, schedule, potential.diffusion_mask
        )
        finite = jnp.all(jnp.isfinite(z_new)) & jnp.isfinite(log_q)
        applies = level.t != level.t_prev
        z = jnp.where(applies & finite, z_new, z)
        return z, jnp.where(applies & finite, log_q, 0.0), applies & ~finite

    def start_step_size(rng_key, state, z, target, level):
        first = level.t == level.t_prev
        if settings.start_rule == "given" or K_adapt == 0:
            size = level.step_size
        else:
            # Near the data the curvature grows like 1 / sigma_t^2, and a few adaptation
            # steps cannot shrink a step size tenfold on their own.
            shrink = jnp.minimum(1.0, schedule.sigmas[level.t] / schedule.sigmas[level.t_prev])
            size = jnp.where(first, level.step_size, state.step_size * shrink)
        if settings.search_first_step:

            def search(size):
                kstate = kernel.init(rng_key, z, target, level.inverse_mass)

                def kernel_at(h):
                    return lambda k, s: kernel.step(k, s, target, h, level.inverse_mass)

                found = find_reasonable_step_size(
                    rng_key, kernel_at, kstate, size, settings.target_accept
                )
                # One proposal is a noisy guide, and a lucky one can pick a size that
                # diverges: the search only shrinks the start.
                return jnp.minimum(found, size)

            size = jax.lax.cond(first, search, lambda s: s, size)
        return size

    def step(rng_key: Array, state: MoveState, level: LevelParams) -> tuple[MoveState, MoveInfo]:
        k_pred, k_init, k_steps, k_search = jax.random.split(rng_key, 4)
        z, log_q, predictor_divergent = state.position, jnp.zeros(()), jnp.zeros((), bool)
        if settings.predictor is not None:
            z, log_q, predictor_divergent = predict(k_pred, z, level)
        target = potential.target(level.t)
        if K == 0:
            info = MoveInfo(
                level.step_size,
                jnp.nan,
                predictor_divergent.astype(jnp.int32),
                jnp.nan,
                log_q,
                jnp.nan,
                jnp.zeros((), bool),
            )
            return MoveState(z, state.step_size, state.kernel_state), info
        kstate = kernel.init(k_init, z, target, level.inverse_mass)
        size = start_step_size(k_search, state, z, target, level)

        def kernel_step(kstate, j, size):
            return kernel.step(
                jax.random.fold_in(k_steps, j), kstate, target, size, level.inverse_mass
            )

        adapt_accept = jnp.nan
        if K_adapt > 0:

            def adapt_body(carry, j):
                kstate, da = carry
                kstate, info = kernel_step(kstate, j, jnp.exp(da.log_step_size))
                return (kstate, da_update(da, info.acceptance_rate)), info.acceptance_rate

            # Shrink toward the start rather than BlackJAX's 10x initial guess:
            # neighbouring levels are alike.
            da: DualAveragingAdaptationState = da_init(size)._replace(mu=jnp.log(size))
            (kstate, da), accepts = jax.lax.scan(adapt_body, (kstate, da), jnp.arange(K_adapt))
            size = da_final(da)
            adapt_accept = jnp.mean(accepts)
        if K > K_adapt:

            def sample_body(kstate, j):
                return kernel_step(kstate, j, size)

            kstate, infos = jax.lax.scan(sample_body, kstate, jnp.arange(K_adapt, K))
            accept = jnp.mean(infos.acceptance_rate)
            num_divergent = jnp.sum(infos.is_divergent)
            last = (infos.acceptance_rate[-1], infos.is_divergent[-1])
        else:
            accept, num_divergent = adapt_accept, jnp.zeros((), jnp.int32)
            last = (adapt_accept, jnp.zeros((), bool))
        z = kernel.position(kstate)
        if kernel.logdensity is not None:  # the state has it: no extra evaluation
            u = -kernel.logdensity(kstate)
        elif potential.has_energy:
            u = potential.potential_fn(z, level.t)
        else:
            u = jnp.nan
        info = MoveInfo(
            size,
            accept,
            num_divergent + predictor_divergent,
            u,
            log_q,
            last[0],
            last[1],
        )
        return MoveState(z, size, kstate), info

    def draw(rng_key: Array, state: MoveState, level: LevelParams) -> tuple[MoveState, Any]:
        """One more kernel step at the level (fixed step size): a further draw."""
        kstate, info = kernel.step(
            rng_key,
            state.kernel_state,
            potential.target(level.t),
            state.step_size,
            level.inverse_mass,
        )
        return MoveState(kernel.position(kstate), state.step_size, kstate), info

    return Move(init, step, draw)
