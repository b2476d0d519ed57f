"""Annealed sequential Monte Carlo over the noise levels, with the model's evidence.

Particles start from ``N(0, I)`` at the top level, weighted by ``exp(-U(z, t_top)) /
N(z; 0, I)``. At every further level they are reweighted by the move's incremental
weight (:func:`~numpyro_diffusion.infer.move.build_move`'s ``enter``: the predictor's
proposal against the forward noising as backward kernel, or ``U_prev(z) - U_t(z)``
without a predictor), resampled with BlackJAX's resampling when the effective sample
size falls below a threshold, and mutated by the same kernel steps annealed MCMC
takes. The running sum of the log mean weights estimates ``log Z = log integral
exp(-U(z, 0)) dz``; the particles are split into independent runs, whose spread
gives the estimate's standard error.
"""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.smc import resampling
from jax import Array
from numpyro.primitives import Messenger

from numpyro_diffusion.errors import EnergyUnavailableError
from numpyro_diffusion.infer.annealed import AnnealedMCMC, DrawStats, WalkSettings, _Compiled
from numpyro_diffusion.infer.kernels import get_kernel
from numpyro_diffusion.infer.move import CHAIN_AXIS, LevelParams, build_move
from numpyro_diffusion.infer.potential import PotentialFamily, as_numpyro_model
from numpyro_diffusion.primitives import diffusion_sites
from numpyro_diffusion.progress import announce_compiling, progress_scan

__all__ = ["AnnealedSMC", "SMCLevelStats", "SMCSettings", "log_marginal_likelihood"]

RESAMPLERS = {
    "systematic": resampling.systematic,
    "stratified": resampling.stratified,
    "multinomial": resampling.multinomial,
    "residual": resampling.residual,
}


ADAPT_GAIN = 2.0  # log step-size change per unit of acceptance above the target, per level


class SMCLevelStats(NamedTuple):
    """Statistics of an SMC walk, one entry per level (all ``(L,)``)."""

    level: Array  # [L] the noise level t
    step_size: Array  # [L] median over particles of the (adapted) step size
    acceptance_rate: Array  # [L] mean over particles and post-adaptation steps
    num_divergent: Array  # [L] divergent transitions (predictor included)
    mean_potential: Array  # [L] mean U(z, t) over particles after the mutation
    weight_ess: Array  # [L] ESS of the weights after reweighting, before resampling, as a
    # fraction of each run's particles (mean over runs)
    resampled: Array  # [L] fraction of the independent runs that resampled at the level
    log_normalizer_increment: Array  # [L] log of the mean incremental weight (mean over runs)


class SMCSettings(NamedTuple):
    """Everything that shapes a compiled SMC walk."""

    walk: WalkSettings
    adapt: bool  # each run's step size follows its acceptance rate from level to level
    resampling: str
    ess_threshold: float
    num_runs: int

    def __getattr__(self, name: str) -> Any:  # the walk's settings: move, kernel, ...
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.walk, name)


class AnnealedSMC(AnnealedMCMC):
    """Annealed sequential Monte Carlo over the noise levels of a NumPyro model.

    The particles walk the levels of :class:`AnnealedMCMC` with its per-level move as
    the mutation; between the predictor and the kernel steps they are reweighted and,
    when the effective sample size falls below ``ess_threshold``, resampled. Unlike
    annealed MCMC, SMC moves mass between separated modes through the weights, and it
    estimates the normaliser ``log Z = log integral exp(-U(z, 0)) dz`` of the whole
    model (:attr:`log_normalizer`), exact in expectation when every diffusion site's
    energy is normalised (exact mixtures); :func:`log_marginal_likelihood` gives
    ``log p(y)`` for trained energies too.

    Parameters are those of :class:`AnnealedMCMC` (with ``num_particles`` for
    ``num_chains``; one draw per particle), and:

    resampling
        BlackJAX's scheme: ``"systematic"`` (default), ``"stratified"``,
        ``"multinomial"`` or ``"residual"``.
    ess_threshold
        Resample when the effective sample size falls below this fraction of a
        run's particles (1.0: at every level; 0.0: never).
    num_runs
        Independent SMC runs the particles are split into (they share nothing: not
        the resampling, not the preconditioner); the normaliser is the mean of their
        estimates and its standard error their spread. ``num_particles`` must be a
        multiple of it.
    predictor
        ``None`` (default): annealed importance sampling with resampling, weights
        ``U_prev(z) - U_t(z)`` at the particles before their kernel steps.
        ``"ddpm"`` / ``"guided"``: an ancestral step enters each level, its proposal
        weighed against the forward noising as backward kernel; unbiased too, but an
        ancestral step is far from the exact reverse transition near the data, so the
        weights vary much more.
    target_accept
        With adaptation (MALA / HMC by default), each run shares one step size, which
        follows the run's acceptance rate from level to level toward this target; a
        level's steps use a fixed size, so they leave its density invariant
        (``adapt_fraction`` does not apply).

    The mutation kernels ``"mala"`` and ``"hmc"`` leave every level's density
    invariant, so the weights are exact; ``"ula"`` and ``"uhmc"`` do not, and their
    bias enters the weights. Every diffusion site needs an energy: a weight compares
    one point at two levels.
    """

    def __init__(
        self,
        model: Any,
        kernel: str,
        num_particles: int,
        steps_per_level: int,
        levels: Any = None,
        step_size: Any = None,
        target_accept: float | None = None,
        predictor: str | None = None,
        chain_method: str = "vectorized",
        progress_bar: bool = True,
        *,
        resampling: str = "systematic",
        ess_threshold: float = 0.5,
        num_runs: int = 8,
        **options: Any,
    ):
        if options.get("energy") is not None:
            raise ValueError(
                "AnnealedSMC cannot use energy='line_integral': its weights compare one "
                "point at two noise levels, which no line integral in space gives. Use "
                "AnnealedMCMC with energy='line_integral' for score-only models."
            )
        if options.get("jump") is not None:
            raise ValueError(
                "AnnealedSMC takes no jump: a jump between its reweighting and its kernel "
                "steps would need weights of its own. Use AnnealedMCMC(..., jump=...)."
            )
        if options.get("superchain_size", 1) != 1:
            raise ValueError(
                "AnnealedSMC takes no superchain_size: resampling already mixes the "
                "particles' starts, and its ESS is the diagnostic."
            )
        if options.pop("chain_block_size", None) is not None:
            raise ValueError(
                "AnnealedSMC takes no chain_block_size: resampling draws from every "
                "particle at once. Use AnnealedMCMC for blocks of chains."
            )
        if "num_samples" in options:
            raise TypeError(
                "AnnealedSMC takes no num_samples: it returns one draw per particle "
                "(use num_particles)."
            )
        self.resampling = resampling
        self.ess_threshold = ess_threshold
        self.num_runs = num_runs
        super().__init__(
            model,
            kernel,
            num_particles,
            steps_per_level,
            levels=levels,
            step_size=step_size,
            target_accept=target_accept,
            predictor=predictor,
            num_samples=1,
            chain_method=chain_method,
            progress_bar=progress_bar,
            chain_block_size=None,
            **options,
        )

    @property
    def num_particles(self) -> int:
        """All particles over the independent runs."""
        return self.num_chains

    @num_particles.setter
    def num_particles(self, value: int) -> None:
        self.num_chains = value

    def settings(self) -> SMCSettings:  # type: ignore[override]
        walk = super().settings()
        if self.num_samples != 1:
            raise ValueError("AnnealedSMC draws one sample per particle: num_samples must be 1.")
        if self.resampling not in RESAMPLERS:
            raise ValueError(
                f"unknown resampling {self.resampling!r}; expected one of {', '.join(RESAMPLERS)}."
            )
        if not 0.0 <= self.ess_threshold <= 1.0:
            raise ValueError(f"ess_threshold must lie in [0, 1], got {self.ess_threshold}.")
        if (
            isinstance(self.num_runs, bool)
            or not isinstance(self.num_runs, (int, np.integer))
            or self.num_runs < 1
        ):
            raise ValueError(f"num_runs must be an integer >= 1, got {self.num_runs!r}.")
        if self.num_chains % self.num_runs or self.num_chains // self.num_runs < 2:
            raise ValueError(
                f"num_particles ({self.num_chains}) must be a multiple of num_runs "
                f"({self.num_runs}) with at least 2 particles a run."
            )
        # Adapting a particle's step size along its own path breaks the kernel's
        # invariance, which the weights rely on (a bias of several standard errors
        # in log Z): each run adapts one step size between levels instead.
        move = walk.move._replace(
            weigh=True, num_adapt_steps=0, search_first_step=False, start_rule="given"
        )
        return SMCSettings(
            walk._replace(move=move),
            self.adapt,
            self.resampling,
            float(self.ess_threshold),
            int(self.num_runs),
        )

    def _needs_energy(self) -> bool:
        return True

    def _energy_error(self) -> EnergyUnavailableError:
        return EnergyUnavailableError(
            "The model given to AnnealedSMC",
            "SMC's weights compare one point at two noise levels, which no line integral "
            "in space can give. Use AnnealedMCMC instead: 'ula' or 'uhmc', or 'mala' / "
            "'hmc' with energy='line_integral'.",
        )

    def _walk_keys(self, rng_key: Array) -> tuple[Array, Array]:
        """Each particle's key ``(num_particles, 2)`` and each run's ``(num_runs, 2)``."""
        particle_key, run_key = jax.random.split(rng_key)
        return (
            jax.random.split(particle_key, self.num_chains),
            jax.random.split(run_key, self.num_runs),
        )

    def _shard(self, particle_keys: Array, run_keys: Array) -> tuple[Array, Array]:
        (particle_keys,) = super()._shard(particle_keys)
        return particle_keys, run_keys

    def _compile(self, settings: SMCSettings, family: PotentialFamily, rebuild) -> _Compiled:
        walk_settings = settings.walk
        kernel = get_kernel(walk_settings.kernel, **dict(walk_settings.kernel_options))
        resample = RESAMPLERS[settings.resampling]
        R, threshold, keep = (
            settings.num_runs,
            settings.ess_threshold,
            walk_settings.keep_trajectory,
        )
        D = family.diffusion_mask.shape[0]
        log_normal_const = 0.5 * D * math.log(2 * math.pi)
        particles = functools.partial(jax.vmap, in_axes=(0, 0, None), axis_name=CHAIN_AXIS)
        target_accept = walk_settings.move.target_accept
        traces = [0]

        def walk(particle_keys, run_keys, params: LevelParams, dynamic):
            traces[0] += 1
            L, N = params.t.shape[0], particle_keys.shape[0]
            P = N // R
            announce_compiling(
                f"annealed SMC walk ({kernel.name}, {L} levels, {R} runs x {P} particles)",
                walk_settings.progress_bar,
            )
            args, kwargs = rebuild(dynamic)
            potential = family.at(args, kwargs)
            move = build_move(kernel, potential, walk_settings.move)
            first = jax.tree.map(lambda a: a[0], params)
            split2 = jax.vmap(jax.random.split)
            keys = split2(particle_keys).reshape(R, P, 2, *particle_keys.shape[1:])
            init_keys, walk_keys = keys[:, :, 0], keys[:, :, 1]  # [R, P, 2] each

            def start(init_keys):  # one run
                z0 = jax.vmap(lambda k: jax.random.normal(k, (D,)))(init_keys)
                state = jax.vmap(move.init, (0, 0, None))(init_keys, z0, first)
                return state, jnp.full((P,), -math.log(P)), jnp.zeros(()), first.step_size

            def run_level(run_key, walk_keys, carry, i, level):  # one run, one level
                state, log_w, log_z, size = carry
                if settings.adapt:
                    level = level._replace(step_size=size)
                keys = split2(jax.vmap(jax.random.fold_in, (0, None))(walk_keys, i))
                entered, entry = particles(move.enter)(keys[:, 0], state, level)
                # at the top level the weight of N(0, I) draws: exp(-U) / N(z; 0, I)
                base = 0.5 * jnp.sum(entered.position**2, axis=-1) + log_normal_const
                increment = jnp.where(
                    level.t == level.t_prev, base - entered.potential, entry.log_weight
                )
                increment = jnp.where(jnp.isfinite(increment), increment, -jnp.inf)
                log_w = log_w + increment
                lse = jax.scipy.special.logsumexp(log_w)
                log_z = log_z + lse
                log_w = jnp.where(jnp.isfinite(lse), log_w - lse, -math.log(P))
                ess = jnp.exp(-jax.scipy.special.logsumexp(2 * log_w)) / P
                do_resample = ess < threshold
                chosen = resample(jax.random.fold_in(run_key, i), jnp.exp(log_w), P)
                ancestors = jnp.where(do_resample, chosen, jnp.arange(P))
                entered = jax.tree.map(lambda a: a[ancestors], entered)
                log_w = jnp.where(do_resample, -math.log(P), log_w)
                state, info = particles(move.mutate)(keys[:, 1], entered, level)
                stats = (
                    ess,
                    do_resample,
                    lse,
                    info.step_size,
                    info.acceptance_rate,
                    jnp.sum(info.num_divergent) + jnp.sum(entry.predictor_divergent),
                    jnp.mean(info.potential),
                )
                last = (info.last_acceptance, info.last_divergent, info.last_energy)
                if settings.adapt:
                    accept = jnp.nanmean(info.acceptance_rate)
                    gain = jnp.where(jnp.isfinite(accept), accept - target_accept, -1.0)
                    size = size * jnp.exp(ADAPT_GAIN * gain)
                return (state, log_w, log_z, size), (stats, last)

            def level_body(carry, i_level):
                i, level = i_level
                carry, (stats, last) = jax.vmap(run_level, (0, 0, 0, None, None))(
                    run_keys, walk_keys, carry, i, level
                )
                ess, resampled, lse, sizes, accepts, divergent, mean_u = stats
                level_stats = SMCLevelStats(
                    level.t,
                    jnp.median(sizes),
                    jnp.mean(accepts),
                    jnp.sum(divergent),
                    jnp.mean(mean_u),
                    jnp.mean(ess),
                    jnp.mean(resampled.astype(jnp.float32)),
                    jnp.mean(lse),
                )
                return carry, (level_stats, last, carry[0].position if keep else None)

            carry = jax.vmap(start)(init_keys)
            (state, log_w, log_z, _), (level_stats, lasts, trajectory) = progress_scan(
                level_body,
                carry,
                params,
                length=L,
                label=f"annealed SMC ({kernel.name})",
                enabled=walk_settings.progress_bar,
            )
            # equally weighted draws: every run resamples its final particles
            final = jax.vmap(lambda k, lw: resample(jax.random.fold_in(k, L), jnp.exp(lw), P))(
                run_keys, log_w
            )
            take = jax.vmap(lambda a, idx: a[idx])  # per run

            def draws(a):  # [R, P] -> [N, 1]
                return take(a, final).reshape(N, 1, *a.shape[2:])

            positions = draws(state.position)  # [N, 1, D]
            last = [draws(x[-1]) for x in lasts]
            draw_stats = DrawStats(
                last[0], last[1], -draws(state.potential), draws(state.step_size), last[2]
            )
            t_final = params.t[-1]
            samples = jax.vmap(jax.vmap(lambda p: family.constrain_fn(p, t_final, args, kwargs)))(
                positions
            )
            samples["_flat"] = positions
            if keep:  # [L, R, P, D] -> [L, N, D]
                samples["_trajectory"] = trajectory.reshape(L, N, D)
            return samples, draw_stats, level_stats, log_z

        return _Compiled(family, jax.jit(walk), traces)

    # ----------------------------------------------------------------- results

    @property
    def run_log_normalizers(self) -> Array:
        """Each independent run's estimate of ``log Z``, ``(num_runs,)``."""
        return self._require_run()[3]

    @property
    def log_normalizer(self) -> float:
        """``log Z = log integral exp(-U(z, 0)) dz``: the log of the runs' mean estimate
        of ``Z`` (each unbiased)."""
        log_z = np.asarray(self.run_log_normalizers, np.float64)
        return float(_log_mean_exp(log_z))

    @property
    def log_normalizer_stderr(self) -> float:
        """The standard error of :attr:`log_normalizer`, from the spread of the
        independent runs' estimates of ``Z`` (delta method); NaN with one run."""
        log_z = np.asarray(self.run_log_normalizers, np.float64)
        if log_z.size < 2 or not np.all(np.isfinite(log_z)):
            return float("nan")
        ratios = np.exp(log_z - _log_mean_exp(log_z))
        return float(np.std(ratios, ddof=1) / np.sqrt(log_z.size))

    @property
    def level_stats(self) -> SMCLevelStats:  # type: ignore[override]
        """The last run's per-level statistics, each ``(L,)`` (see :class:`SMCLevelStats`)."""
        return self._require_run()[2]

    def _draws_note(self) -> str:
        return (
            f"({self.num_chains} particles in {self.num_runs} independent runs, resampled to "
            f"equal weights at t = 0)\n\nlog Z = {self.log_normalizer:.4f} +- "
            f"{self.log_normalizer_stderr:.4f} (standard error over the runs)"
        )

    @staticmethod
    def _level_columns(stats: Any) -> list[tuple[str, str, np.ndarray]]:
        return [
            *AnnealedMCMC._level_columns(stats),
            ("ESS", ".3f", stats.weight_ess),
            ("resampled", ".2f", stats.resampled),
            ("log Z incr.", ".4g", stats.log_normalizer_increment),
        ]


def _log_mean_exp(x: np.ndarray) -> float:
    m = np.max(x)
    if not np.isfinite(m):
        return float(m)
    return float(m + np.log(np.mean(np.exp(x - m))))


class drop_observations(Messenger):
    """Removes the model's observations: observed sample sites other than factors
    (``numpyro.factor``, ``diffusion_factor``) contribute nothing."""

    def process_message(self, msg):
        if (
            msg["type"] == "sample"
            and msg["is_observed"]
            and not diffusion_sites({msg["name"]: msg})
            and type(msg["fn"]).__name__ != "Unit"
        ):
            msg["fn"] = msg["fn"].mask(False)


@functools.lru_cache(maxsize=64)
def _without_observations(model_fn):
    # one function per model, so its compiled walks are reused
    def model_without_observations(*args, **kwargs):
        with drop_observations():
            return model_fn(*args, **kwargs)

    return model_without_observations


def _keywords(cls: type) -> set[str]:
    return set(inspect.signature(cls.__init__).parameters)


# the samplers' settings, as log_marginal_likelihood routes them (the rest is the model's)
_SAMPLER_KEYWORDS = (_keywords(AnnealedSMC) | _keywords(AnnealedMCMC)) - {
    "self",
    "model",
    "kernel",
    "num_chains",
    "num_particles",
    "steps_per_level",
    "options",
}


def log_marginal_likelihood(
    rng_key: Array,
    model: Any,
    *args: Any,
    kernel: str = "hmc",
    num_particles: int = 1024,
    steps_per_level: int = 10,
    **settings: Any,
) -> tuple[float, float]:
    """``log p(y)`` of a model's observations, and its standard error.

    The difference of two annealed SMC normalisers over the same levels, of the
    model and of the model without its observed sites (``numpyro.factor`` and
    diffusion factors stay, as part of the prior): a trained energy's unknown
    per-level constants cancel. Keywords that :class:`AnnealedSMC` or
    :class:`AnnealedMCMC` take (``levels``, ``predictor``, ``num_runs``, ...) go to the
    sampler; ``args`` and every other keyword go to the model.
    """
    sampler_settings = {k: settings.pop(k) for k in list(settings) if k in _SAMPLER_KEYWORDS}
    model_fn, lead = as_numpyro_model(model)
    prior_fn = _without_observations(model_fn)
    with_key, without_key = jax.random.split(rng_key)
    estimates = []
    for fn, key in ((model_fn, with_key), (prior_fn, without_key)):
        smc = AnnealedSMC(fn, kernel, num_particles, steps_per_level, **sampler_settings)
        smc.run(key, *lead, *args, **settings)
        estimates.append((smc.log_normalizer, smc.log_normalizer_stderr))
    (with_obs, se_with), (without_obs, se_without) = estimates
    return with_obs - without_obs, float(np.hypot(se_with, se_without))
