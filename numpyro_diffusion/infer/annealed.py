"""Annealed MCMC: a kernel run at every noise level of a NumPyro model, all chains at once."""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.adaptation.step_size import (
    dual_averaging_adaptation,
    find_reasonable_step_size,
)
from jax import Array
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from numpyro_diffusion.errors import EnergyUnavailableError
from numpyro_diffusion.infer.kernels import LevelTarget, get_kernel
from numpyro_diffusion.infer.potential import PotentialFamily, initialize_potential
from numpyro_diffusion.interface import Diffusion
from numpyro_diffusion.progress import progress_scan
from numpyro_diffusion.schedules import VPSchedule

__all__ = ["AnnealedMCMC", "LevelStats", "DrawStats", "BETA_STEP_FACTORS"]

# Du et al.'s image-code step sizes as multiples of beta_t; HMC and U-HMC also use
# the mass matrix beta_t I there.
BETA_STEP_FACTORS = {"ula": 2.0, "mala": 0.035, "hmc": 0.1, "uhmc": 0.1}
_BETA_MASS = ("hmc", "uhmc")
# The "sigma" rule: Langevin steps scale with the level's variance sigma_t^2,
# leapfrog steps with sigma_t (positions move by about sqrt(2 h) and eps v).
SIGMA_STEP_RULES = {"ula": (0.05, 2), "mala": (0.05, 2), "hmc": (0.1, 1), "uhmc": (0.1, 1)}
_INITIAL_ADAPT_STEP = {"mala": 0.5, "hmc": 0.3}
PREDICTORS = (None, "ddpm", "guided")
CHAIN_METHODS = ("vectorized", "sharded")


class LevelStats(NamedTuple):
    """Statistics of the walk, one entry per level (all ``(L,)``)."""

    level: Array  # [L] the noise level t
    step_size: Array  # [L] median over chains of the (adapted) step size at t
    acceptance_rate: Array  # [L] mean over chains and post-adaptation steps
    num_divergent: Array  # [L] divergent transitions after adaptation (predictor included)
    mean_potential: Array  # [L] mean U(z, t) over chains at the end of the level


class DrawStats(NamedTuple):
    """Statistics of the final draws at the last level, each ``(num_chains, num_samples)``."""

    acceptance_rate: Array
    diverging: Array
    lp: Array  # log-density -U(z, t_final); NaN for score-only models
    step_size: Array  # each chain's step size at the final level


class _Compiled(NamedTuple):
    family: PotentialFamily
    walk: Any  # jitted (chain_keys, z0, levels, steps, inverse_mass, dyn_leaves) -> results
    init: Any  # jitted (init_keys, dyn_leaves) -> z0 (C, D)


class AnnealedMCMC:
    """Annealed MCMC over the noise levels of a NumPyro model with diffusion sites.

    At each level ``t`` (decreasing, ending at 0): optionally one reverse-diffusion
    predictor step on the ``diffusion_prior`` sites, then ``steps_per_level`` kernel
    steps targeting ``U(., t)``. After the last level, ``num_samples`` draws at
    ``t = 0`` (the first is the walk's end point, each further one a kernel step
    later). The walk over levels is one ``lax.scan`` inside one ``jit``, chains
    ``vmap``-ped, compiled once per model and argument shapes; a chain's random
    numbers depend only on its own key, so sharded and vectorised runs agree.

    Parameters
    ----------
    model
        A NumPyro model function, or a diffusion model (a single prior site ``"x"``).
    kernel
        ``"mala"`` or ``"hmc"`` (BlackJAX, Metropolis-corrected), ``"ula"`` or
        ``"uhmc"`` (unadjusted; work with score-only models).
    num_chains
        Independent chains, vectorised.
    steps_per_level
        Kernel steps at each level; 0 with ``predictor="ddpm"`` is plain reverse
        diffusion with the summed scores.
    levels
        ``None`` for every schedule level, an int ``n`` for ``n`` evenly spaced
        levels from the schedule's ``first_conditioned_level`` (see
        :meth:`VPSchedule.walk_levels`), or a strictly decreasing sequence of levels
        (0 is appended if missing).
    step_size
        A float (fixed), a ``(L,)`` array (one per level), ``"sigma"`` (``0.05
        sigma_t^2`` for ULA / MALA, ``0.1 sigma_t`` for the leapfrog kernels), ``"beta"``
        (Du et al.'s image-code rule proportional to ``beta_t``, with mass ``beta_t`` for
        HMC / U-HMC; made for linear schedules with ``beta_t <= 0.02``), or ``None``:
        adaptation for MALA / HMC, ``"sigma"`` for ULA / U-HMC.
    target_accept
        Target of per-level dual-averaging adaptation (MALA 0.57, HMC 0.65 by
        default); giving it turns adaptation on, starting from ``step_size`` if given.
        Each chain adapts its own step size during the first ``adapt_fraction`` of
        every level, so a chain in a sharp corner of the target is not stuck at the
        others' size; each level starts from the previous level's size times
        ``min(1, sigma_t / sigma_prev)`` (near the data the curvature grows like
        ``1 / sigma_t^2``; on the digit energy model this took the last level from 16
        divergent transitions of 16 to none). Divergences are counted after
        adaptation. Without a given ``step_size``, each chain's first size is BlackJAX's
        ``find_reasonable_step_size`` at the first level, capped at the default start
        (with the fixed start alone, nearly every transition of an inpainting
        posterior's first two levels diverged).
    predictor
        ``"ddpm"``: one ancestral step between levels driven by the summed scores of
        the diffusion terms (priors and factors), the part of the target that changes
        with ``t``; observations and other factors are left to the kernel.
        ``"guided"``: the same step driven by the score of the whole potential
        (likelihood gradients included, as in guided reverse diffusion); unstable
        when a sharp likelihood meets the large ``beta_t`` of the top levels.
        ``None``: no predictor.
    num_samples
        Draws per chain at the final level.
    chain_method
        ``"vectorized"`` or ``"sharded"`` (chains spread over all devices).
    progress_bar
        Show progress over levels.
    adapt_fraction
        Fraction of each level's steps spent adapting the step size.
    adapt_gamma
        Dual averaging's ``gamma``. Each chain adapts its own step size, starting
        from its previous level's; BlackJAX's 0.05 suits long warm-ups, and a few
        steps per level want the gentler 0.5 (measured: 5,257 divergences with 0.05,
        1 with 0.5, on a two-Gaussian mixture with 2,000 chains).
    num_integration_steps, damping, divergence_threshold
        Kernel options (leapfrog steps of HMC / U-HMC, U-HMC momentum damping,
        energy error counted as a divergence).
    keep_trajectory
        Keep every chain's position at the end of every level (``(L, C, D)``
        floats) for :meth:`get_trajectory` and the sample-cloud plots.
    """

    def __init__(
        self,
        model: Any,
        kernel: str,
        num_chains: int,
        steps_per_level: int,
        levels: Any = None,
        step_size: Any = None,
        target_accept: float | None = None,
        predictor: str | None = "ddpm",
        num_samples: int = 1,
        chain_method: str = "vectorized",
        progress_bar: bool = True,
        *,
        adapt_fraction: float = 0.5,
        num_integration_steps: int = 3,
        damping: float = 0.5,
        divergence_threshold: float = 1000.0,
        keep_trajectory: bool = False,
        adapt_gamma: float = 0.5,
    ):
        self.kernel = get_kernel(
            kernel,
            num_integration_steps=num_integration_steps,
            damping=damping,
            divergence_threshold=divergence_threshold,
        )
        if isinstance(model, Diffusion) and self.kernel.needs_energy and not model.has_energy:
            raise EnergyUnavailableError(f"The model given to the '{kernel}' sampler")
        _check_int("num_chains", num_chains, 1)
        _check_int("steps_per_level", steps_per_level, 0)
        _check_int("num_samples", num_samples, 1)
        if predictor not in PREDICTORS:
            raise ValueError(f"unknown predictor {predictor!r}; expected 'ddpm', 'guided' or None.")
        if chain_method not in CHAIN_METHODS:
            raise ValueError(
                f"unknown chain_method {chain_method!r}; expected one of "
                f"{', '.join(CHAIN_METHODS)}."
            )
        if steps_per_level == 0 and predictor is None:
            raise ValueError(
                "steps_per_level=0 with predictor=None does nothing; use predictor='ddpm' "
                "for reverse diffusion or steps_per_level > 0 for MCMC."
            )
        if target_accept is not None and not 0.0 < target_accept < 1.0:
            raise ValueError(f"target_accept must lie in (0, 1), got {target_accept}.")
        if not 0.0 <= adapt_fraction < 1.0:
            raise ValueError(f"adapt_fraction must lie in [0, 1), got {adapt_fraction}.")
        adapting = target_accept is not None or (step_size is None and self.kernel.needs_energy)
        if adapting and not self.kernel.needs_energy:
            raise ValueError(
                f"step-size adaptation needs a Metropolis kernel ('mala' or 'hmc'); "
                f"'{kernel}' has no acceptance to adapt to. Give step_size (a float, an "
                "array of one per level, 'sigma' or 'beta')."
            )
        if isinstance(step_size, str) and step_size not in ("beta", "sigma"):
            raise ValueError(
                f"unknown step_size {step_size!r}; expected a number, an array, 'sigma' or 'beta'."
            )
        if isinstance(step_size, (int, float)) and not step_size > 0:
            raise ValueError(f"step_size must be positive, got {step_size}.")
        self.model = model
        self.num_chains = int(num_chains)
        self.steps_per_level = int(steps_per_level)
        self.levels = levels
        self.step_size = step_size
        self.adapt = adapting
        # without a user-given start, search each chain's first step size (the first
        # level's curvature is unknown; a fixed guess can diverge for whole levels)
        self.search_first_step = adapting and step_size is None
        self.target_accept = (
            target_accept if target_accept is not None else (self.kernel.target_accept)
        )
        self.predictor = predictor
        self.num_samples = int(num_samples)
        self.chain_method = chain_method
        self.progress_bar = progress_bar
        self.num_adapt_steps = int(adapt_fraction * steps_per_level) if adapting else 0
        self.keep_trajectory = keep_trajectory
        self.da_gamma = adapt_gamma
        self.num_integration_steps = num_integration_steps
        self._cache: dict[Any, _Compiled] = {}
        self.num_traces = 0
        self._samples: dict[str, Array] | None = None
        self._draw_stats: DrawStats | None = None
        self._level_stats: LevelStats | None = None

    # ------------------------------------------------------------------ set-up

    def resolve_levels(self, schedule: VPSchedule) -> np.ndarray:
        """The levels walked, as a decreasing integer array ending at 0."""
        return schedule.walk_levels(self.levels)

    def _step_sizes(self, schedule: VPSchedule, levels: np.ndarray) -> tuple[Array, Array]:
        betas = np.asarray(schedule.betas)[levels]
        inverse_mass = np.ones_like(betas)
        s = self.step_size
        if s is None and not self.adapt:
            s = "sigma"
        if isinstance(s, str) and s == "beta":
            steps = BETA_STEP_FACTORS[self.kernel.name] * betas
            if self.kernel.name in _BETA_MASS:
                inverse_mass = 1.0 / betas
        elif isinstance(s, str):  # "sigma"
            factor, power = SIGMA_STEP_RULES[self.kernel.name]
            steps = factor * np.asarray(schedule.sigmas)[levels] ** power
        elif s is None:
            steps = np.full_like(betas, _INITIAL_ADAPT_STEP[self.kernel.name])
        else:
            arr = np.asarray(s, dtype=np.float32)
            if arr.ndim == 0:
                steps = np.full_like(betas, float(arr))
            elif arr.shape == levels.shape:
                steps = arr
            else:
                raise ValueError(
                    f"step_size has shape {arr.shape}; give one number or one per level "
                    f"({levels.size} levels)."
                )
            if not np.all(steps > 0):
                raise ValueError("every step size must be positive.")
        return jnp.asarray(steps, jnp.float32), jnp.asarray(inverse_mass, jnp.float32)

    # --------------------------------------------------------------------- run

    def run(self, rng_key: Array, *args: Any, **kwargs: Any) -> None:
        """Walk every level and draw ``num_samples`` per chain at ``t = 0``.

        ``args`` and ``kwargs`` go to the model; arrays among them are traced, so a
        second call with the same shapes reuses the compiled program.
        """
        init_key, walk_key = jax.random.split(rng_key)
        init_keys = jax.random.split(init_key, self.num_chains)
        leaves, treedef = jax.tree.flatten((args, kwargs))
        dynamic = [isinstance(x, (jax.Array, np.ndarray)) for x in leaves]
        key = (
            treedef,
            tuple(
                (np.shape(x), str(jnp.result_type(x))) if d else _hashable(x)
                for x, d in zip(leaves, dynamic, strict=True)
            ),
        )
        dyn_leaves = [x for x, d in zip(leaves, dynamic, strict=True) if d]
        compiled = self._cache.get(key)
        if compiled is None:
            # Tracing the model (and NumPyro's search for a valid start) happens once per
            # model and argument shapes; later runs reuse the compiled start and walk.
            family, z0 = initialize_potential(init_keys, self.model, args, kwargs)
            if self.kernel.needs_energy and not family.has_energy:
                raise EnergyUnavailableError(f"The model given to the '{self.kernel.name}' sampler")
            if family.schedule is None:
                raise ValueError(
                    "the model has no diffusion_prior or diffusion_factor site, so it has no "
                    "noise levels to anneal over."
                )
            compiled = self._compile(family, leaves, dynamic, treedef)
            self._cache[key] = compiled
        else:
            family = compiled.family
            z0 = compiled.init(init_keys, dyn_leaves)
        levels = self.resolve_levels(family.schedule)
        steps, inverse_mass = self._step_sizes(family.schedule, levels)
        chain_keys = jax.random.split(walk_key, self.num_chains)
        if self.chain_method == "sharded":
            chain_keys, z0 = self._shard(chain_keys, z0)
        samples, draw_stats, level_stats = compiled.walk(
            chain_keys, z0, jnp.asarray(levels), steps, inverse_mass, dyn_leaves
        )
        self._samples = samples
        self._draw_stats = draw_stats
        self._level_stats = level_stats
        self._unravel = family.unravel_fn
        total = self.num_divergent
        if total:
            warnings.warn(
                f"{total} divergent transitions (non-finite potential or energy error above "
                "the threshold); they were rejected. See print_summary() for the levels.",
                stacklevel=2,
            )

    def _shard(self, chain_keys: Array, z0: Array) -> tuple[Array, Array]:
        devices = np.array(jax.devices())
        if self.num_chains % devices.size:
            raise ValueError(
                f"chain_method='sharded' needs num_chains ({self.num_chains}) divisible by the "
                f"number of devices ({devices.size})."
            )
        mesh = Mesh(devices, ("chain",))
        sharding = NamedSharding(mesh, PartitionSpec("chain"))
        return jax.device_put(chain_keys, sharding), jax.device_put(z0, sharding)

    def _compile(self, family: PotentialFamily, leaves, dynamic, treedef) -> _Compiled:
        kernel = self.kernel
        schedule = family.schedule
        mask = family.diffusion_mask
        K, K_adapt, S = self.steps_per_level, self.num_adapt_steps, self.num_samples
        adapt, predictor, keep = self.adapt, self.predictor, self.keep_trajectory
        search_first, target_accept = self.search_first_step, self.target_accept
        da_init, da_update, da_final = dual_averaging_adaptation(
            self.target_accept, gamma=self.da_gamma
        )
        has_energy = family.has_energy

        def rebuild(dyn_leaves):
            it = iter(dyn_leaves)
            full = [next(it) if d else x for x, d in zip(leaves, dynamic, strict=True)]
            return jax.tree.unflatten(treedef, full)

        def walk(chain_keys, z0, levels, base_steps, inverse_mass, dyn_leaves):
            self.num_traces += 1
            args, kwargs = rebuild(dyn_leaves)

            def potential(z, t):
                return family.potential_fn(z, t, args, kwargs)

            def grad_potential(z, t):
                return family.grad_fn(z, t, args, kwargs)

            def target_at(t):
                return LevelTarget(lambda z: -potential(z, t), lambda z: -grad_potential(z, t))

            def mean_potential(z, t):
                if not has_energy:
                    return jnp.nan
                return jnp.mean(jax.vmap(potential, (0, None))(z, t))

            def predictor_grad(z, t):
                if predictor == "guided":
                    return grad_potential(z, t)
                return family.diffusion_grad_fn(z, t, args, kwargs)

            def predict(key, z, t_prev, t):
                eps = schedule.sigmas[t_prev] * predictor_grad(z, t_prev)
                z_new = schedule.ddpm_step(z, eps, t_prev, t, jax.random.normal(key, z.shape))
                return jnp.where(mask, z_new, z)

            def kernel_steps(keys, state, target, sizes, inv_mass):
                """One kernel step for every chain; ``sizes`` is ``(C,)``."""
                return jax.vmap(lambda k, s, h: kernel.step(k, s, target, h, inv_mass))(
                    keys, state, sizes
                )

            def fold(keys, j):
                return jax.vmap(jax.random.fold_in, (0, None))(keys, j)

            def level_body(carry, i_x):
                i, (t, t_prev, base_step, inv_mass) = i_x
                z, last_step, last_info = carry
                C = z.shape[0]
                keys = jax.vmap(lambda k: jax.random.split(jax.random.fold_in(k, i), 3))(chain_keys)
                k_pred, k_init, k_steps = keys[:, 0], keys[:, 1], keys[:, 2]
                num_div = jnp.zeros((), jnp.int32)
                if predictor is not None:
                    z_pred = jax.vmap(predict, (0, 0, None, None))(k_pred, z, t_prev, t)
                    finite = jnp.all(jnp.isfinite(z_pred), axis=-1)
                    apply = (i > 0) & finite
                    z = jnp.where(apply[:, None], z_pred, z)
                    num_div += jnp.sum((i > 0) & ~finite)
                base = jnp.full((C,), base_step)
                if K == 0:
                    stats = (t, base_step, jnp.nan, num_div, mean_potential(z, t))
                    stats += (z,) if keep else ()
                    return (z, base, (jnp.full((C,), jnp.nan), jnp.zeros(C, bool))), stats
                target = target_at(t)
                state = jax.vmap(lambda k, x: kernel.init(k, x, target, inv_mass))(k_init, z)
                # Each chain adapts its own step size: a chain in a sharp corner of the
                # target shrinks its steps instead of being stuck at the others' size.
                if adapt:
                    # Start from the previous level's size, shrunk with the noise scale:
                    # near the data the curvature grows like 1 / sigma_t^2, and a few
                    # adaptation steps cannot shrink a step size tenfold on their own.
                    shrink = jnp.minimum(1.0, schedule.sigmas[t] / schedule.sigmas[t_prev])
                    sizes = jnp.where(i == 0, base, last_step * shrink)
                else:
                    sizes = base
                if search_first:

                    def search(sizes):
                        def one_chain(key, state, size):
                            def kernel_at(h):
                                return lambda k, s: kernel.step(k, s, target, h, inv_mass)

                            return find_reasonable_step_size(
                                key, kernel_at, state, size, target_accept
                            )

                        # At i == 0 no predictor step runs, so its keys are free. The
                        # search only shrinks the default: one proposal per chain is a
                        # noisy guide, and a lucky one can pick a size that diverges.
                        found = jax.vmap(one_chain)(k_pred, state, sizes)
                        return jnp.minimum(found, sizes)

                    sizes = jax.lax.cond(i == 0, search, lambda sizes: sizes, sizes)
                accept_adapt = jnp.nan
                if K_adapt > 0:

                    def adapt_body(c, j):
                        state, da = c
                        state, info = kernel_steps(
                            fold(k_steps, j), state, target, jnp.exp(da.log_step_size), inv_mass
                        )
                        da = jax.vmap(da_update)(da, info.acceptance_rate)
                        return (state, da), jnp.mean(info.acceptance_rate)

                    # Shrink toward the previous level's step size rather than
                    # BlackJAX's 10x initial guess: neighbouring levels are alike.
                    da = jax.vmap(da_init)(sizes)._replace(mu=jnp.log(sizes))
                    (state, da), accepts = jax.lax.scan(
                        adapt_body, (state, da), jnp.arange(K_adapt)
                    )
                    sizes = jax.vmap(da_final)(da)
                    accept_adapt = jnp.mean(accepts)
                if K > K_adapt:

                    def sample_body(state, j):
                        return kernel_steps(fold(k_steps, j), state, target, sizes, inv_mass)

                    state, infos = jax.lax.scan(sample_body, state, jnp.arange(K_adapt, K))
                    accept = jnp.mean(infos.acceptance_rate)
                    num_div += jnp.sum(infos.is_divergent)
                    last = (infos.acceptance_rate[-1], infos.is_divergent[-1])
                else:
                    accept = accept_adapt
                    last = (jnp.full((C,), accept_adapt), jnp.zeros(C, bool))
                z = jax.vmap(kernel.position)(state)
                if kernel.logdensity is not None:  # the state has it: no extra evaluation
                    level_potential = -jnp.mean(jax.vmap(kernel.logdensity)(state))
                else:
                    level_potential = mean_potential(z, t)
                stats = (t, jnp.median(sizes), accept, num_div, level_potential)
                return (z, sizes, last), stats + ((z,) if keep else ())

            t_prev = jnp.concatenate([levels[:1], levels[:-1]])
            C = z0.shape[0]
            init_carry = (
                z0,
                jnp.full((C,), base_steps[0]),
                (jnp.full((C,), jnp.nan), jnp.zeros((C,), bool)),
            )
            (z, sizes, last), stats = progress_scan(
                level_body,
                init_carry,
                (levels, t_prev, base_steps, inverse_mass),
                length=levels.shape[0],
                label=f"annealed {kernel.name}",
                enabled=self.progress_bar,
            )
            level_stats = LevelStats(*stats[:5])
            if keep:
                samples_trajectory = stats[5]  # [L, C, D]
            t_final = levels[-1]
            positions, accepts, divs = z[None], last[0][None], last[1][None]
            if S > 1:
                target = target_at(t_final)
                final_keys = jax.vmap(
                    lambda k: jax.random.split(jax.random.fold_in(k, levels.shape[0]), 2)
                )(chain_keys)
                state = jax.vmap(lambda k, x: kernel.init(k, x, target, inverse_mass[-1]))(
                    final_keys[:, 0], z
                )

                def draw_body(state, j):
                    state, info = kernel_steps(
                        fold(final_keys[:, 1], j), state, target, sizes, inverse_mass[-1]
                    )
                    pos = jax.vmap(kernel.position)(state)
                    return state, (pos, info.acceptance_rate, info.is_divergent)

                _, (more_pos, more_acc, more_div) = jax.lax.scan(
                    draw_body, state, jnp.arange(S - 1)
                )
                positions = jnp.concatenate([positions, more_pos])
                accepts = jnp.concatenate([accepts, more_acc])
                divs = jnp.concatenate([divs, more_div])
            positions = jnp.swapaxes(positions, 0, 1)  # [C, S, D]
            if has_energy:
                lp = -jax.vmap(jax.vmap(potential, (0, None)), (0, None))(positions, t_final)
            else:
                lp = jnp.full(positions.shape[:2], jnp.nan)
            samples = jax.vmap(jax.vmap(lambda p: family.constrain_fn(p, t_final, args, kwargs)))(
                positions
            )
            samples["_flat"] = positions
            if keep:
                samples["_trajectory"] = samples_trajectory
            step_size = jnp.broadcast_to(sizes[:, None], positions.shape[:2])
            draw_stats = DrawStats(accepts.T, divs.T, lp, step_size)
            return samples, draw_stats, level_stats

        def init(init_keys, dyn_leaves):
            args, kwargs = rebuild(dyn_leaves)
            return family.init_fn(init_keys, args, kwargs)

        return _Compiled(family, jax.jit(walk), jax.jit(init))

    # ----------------------------------------------------------------- results

    def _require_run(self) -> None:
        if self._samples is None:
            raise RuntimeError("no samples yet: call run(rng_key, *args, **kwargs) first.")

    def get_samples(self, group_by_chain: bool = False) -> dict[str, Array]:
        """Samples by site name: ``(num_chains, num_samples, ...)`` if ``group_by_chain``,
        else ``(num_chains * num_samples, ...)``."""
        self._require_run()
        samples = {k: v for k, v in self._samples.items() if not k.startswith("_")}
        if group_by_chain:
            return samples
        return {k: v.reshape((-1, *v.shape[2:])) for k, v in samples.items()}

    def get_extra_fields(self, group_by_chain: bool = False) -> dict[str, Any]:
        """Per-draw statistics (``acceptance_rate``, ``diverging``, ``lp``, shaped like the
        samples' leading axes) and the per-level statistics under ``"levels"``."""
        self._require_run()
        draws = self._draw_stats._asdict()
        if not group_by_chain:
            draws = {k: v.reshape(-1) for k, v in draws.items()}
        draws["levels"] = self._level_stats._asdict()
        return draws

    def get_trajectory(self, site: str) -> tuple[Array, Array]:
        """The levels ``(L,)`` and the site's unconstrained value at the end of each,
        ``(L, num_chains, ...)``; needs ``keep_trajectory=True``."""
        self._require_run()
        if "_trajectory" not in self._samples:
            raise RuntimeError(
                "no trajectory was kept: build the sampler with keep_trajectory=True."
            )
        unravel = self._unravel
        values = jax.vmap(jax.vmap(unravel))(self._samples["_trajectory"])
        if site not in values:
            raise KeyError(f"no latent site {site!r}; the sites are {sorted(values)}.")
        return self._level_stats.level, values[site]

    @property
    def level_stats(self) -> LevelStats:
        self._require_run()
        return self._level_stats

    @property
    def draw_stats(self) -> DrawStats:
        self._require_run()
        return self._draw_stats

    @property
    def num_divergent(self) -> int:
        """Divergent transitions over the whole walk and the final draws."""
        self._require_run()
        return int(np.sum(self._level_stats.num_divergent)) + int(
            np.sum(self._draw_stats.diverging)
        )

    def print_summary(self, prob: float = 0.9, max_levels: int = 12) -> None:
        """NumPyro's summary of the final draws, then the per-level statistics."""
        from numpyro.diagnostics import print_summary

        self._require_run()
        if self.num_samples >= 4:
            print_summary(self.get_samples(group_by_chain=True), prob=prob, group_by_chain=True)
        else:
            print(
                f"(fewer than 4 draws per chain: the {self.num_chains * self.num_samples} final "
                "draws are summarised as one sequence; r_hat needs num_samples >= 4)"
            )
            print_summary(self.get_samples(), prob=prob, group_by_chain=False)
        stats = jax.tree.map(np.asarray, self._level_stats)
        L = stats.level.size
        rows = np.unique(np.round(np.linspace(0, L - 1, min(L, max_levels))).astype(int))
        print(f"\nPer-level statistics ({self.kernel.name}, {L} levels; {len(rows)} shown)")
        print(f"{'level t':>8} {'step size':>11} {'accept':>8} {'diverg.':>8} {'mean U':>12}")
        for r in rows:
            print(
                f"{int(stats.level[r]):>8} {stats.step_size[r]:>11.4g} "
                f"{stats.acceptance_rate[r]:>8.3f} {int(stats.num_divergent[r]):>8} "
                f"{stats.mean_potential[r]:>12.4g}"
            )
        print(f"\nNumber of divergences: {self.num_divergent}")

    def to_arviz(self):
        """The draws and statistics as ``arviz.InferenceData`` (see ``diagnostics.to_arviz``)."""
        from numpyro_diffusion.diagnostics import to_arviz

        return to_arviz(self)


def _check_int(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")


def _hashable(x: Any) -> Any:
    try:
        hash(x)
        return x
    except TypeError:
        return ("id", id(x))
