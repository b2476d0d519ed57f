"""Annealed MCMC: the per-level move scanned over the noise levels, all chains at once."""

from __future__ import annotations

import functools
import warnings
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from numpyro import handlers

from numpyro_diffusion.errors import EnergyUnavailableError
from numpyro_diffusion.infer.arguments import split_arguments
from numpyro_diffusion.infer.jump import check_jump_signal
from numpyro_diffusion.infer.kernels import KERNELS, LevelKernel, get_kernel
from numpyro_diffusion.infer.move import (
    CHAIN_AXIS,
    LevelParams,
    MoveSettings,
    build_move,
    check_predictor,
)
from numpyro_diffusion.infer.multihost import gather, is_main_process, shard_chains
from numpyro_diffusion.infer.nested_rhat import NestedRhat, nested_rhat
from numpyro_diffusion.infer.potential import (
    PotentialFamily,
    as_numpyro_model,
    initialize_potential,
)
from numpyro_diffusion.interface import Diffusion
from numpyro_diffusion.primitives import noise_level
from numpyro_diffusion.progress import announce_compiling, progress_scan
from numpyro_diffusion.schedules import VPSchedule

__all__ = ["AnnealedMCMC", "LevelStats", "DrawStats", "WalkSettings", "clear_compiled_walks"]

CHAIN_METHODS = ("vectorized", "sharded")
CPU_CHAIN_BLOCK = 1024
"""Chains a CPU moves at once by default: about where a 4 x 128 MLP's activations
leave the cache (``benchmarks/peer_pytorch.py``)."""
STEP_RULES = ("sigma", "beta")


class LevelStats(NamedTuple):
    """Statistics of the walk, one entry per level (all ``(L,)``)."""

    level: Array  # [L] the noise level t
    step_size: Array  # [L] median over chains of the (adapted) step size at t
    acceptance_rate: Array  # [L] mean over chains and post-adaptation steps
    num_divergent: Array  # [L] divergent transitions after adaptation (predictor included)
    mean_potential: Array  # [L] mean U(z, t) over chains at the end of the level
    weight_ess: Array  # [L] effective sample size, as a fraction of the chains, of the
    # chains' sequential importance weights so far (the weights annealed SMC resamples by;
    # without resampling they degenerate over many levels; NaN without energies)
    jump_rate: Array  # [L] fraction of chains whose jump was accepted (NaN: no jump there)


class DrawStats(NamedTuple):
    """Statistics of the final draws at the last level, each ``(num_chains, num_samples)``.

    Draw 0 is the walk's end point: its acceptance and divergence are those of the
    final level's last step, which :class:`LevelStats` already counts.
    """

    acceptance_rate: Array
    diverging: Array
    lp: Array  # log-density -U(z, t_final); NaN for score-only models
    step_size: Array  # each chain's step size at the final level
    energy: Array  # the Hamiltonian after each draw's transition (HMC; NaN otherwise)


class WalkSettings(NamedTuple):
    """Everything that shapes the compiled walk (derived from the sampler's attributes)."""

    kernel: str
    kernel_options: tuple  # sorted (name, value) pairs
    move: MoveSettings
    num_samples: int
    keep_trajectory: bool
    progress_bar: bool
    chain_method: str
    chain_block_size: int | None
    init_strategy: Callable | None  # NumPyro strategy for the non-diffusion sites


class _Compiled(NamedTuple):
    family: PotentialFamily
    walk: Any  # jitted (init_keys, chain_keys, level_params, dynamic) -> results
    traces: list  # [count]: how often jit traced the walk (once per compilation)


# Compiled walks shared by every sampler, keyed like jax.jit's cache: (program,
# settings, argument structure and shapes). Least recently used dropped first.
_WALKS: OrderedDict[Any, _Compiled] = OrderedDict()
_MAX_WALKS = 32


def clear_compiled_walks() -> None:
    """Forget every compiled annealed walk (they are shared across sampler objects)."""
    _WALKS.clear()


def over_chains(fn: Any, *per_chain: Any, shared: Any = None, block: int | None = None) -> Any:
    """``fn(*chain, shared)`` for every chain (the leading axis of each ``per_chain``
    pytree): ``jax.vmap`` over them all, or with ``block`` the same vmapped a block
    of that many chains at a time (a smaller working set, the same values)."""
    if block is None:
        axes = (0,) * len(per_chain) + (None,)
        return jax.vmap(fn, axes, axis_name=CHAIN_AXIS)(*per_chain, shared)
    return jax.lax.map(lambda chain: fn(*chain, shared), per_chain, batch_size=block)


class AnnealedMCMC:
    """Annealed MCMC over the noise levels of a NumPyro model with diffusion sites.

    At each level ``t`` (decreasing, ending at 0): optionally one reverse-diffusion
    predictor step on the ``diffusion_prior`` sites, then ``steps_per_level`` kernel
    steps targeting ``U(., t)`` (the move of :mod:`numpyro_diffusion.infer.move`).
    After the last level, ``num_samples`` draws at ``t = 0`` (the first is the walk's
    end point, each further one a kernel step later). The walk is one ``lax.scan``
    inside one ``jit``, chains ``vmap``-ped, compiled once per model structure,
    argument shapes and settings: diffusion models given as arguments (or as
    ``model``) are data, so a retrained or reloaded model of the same architecture
    reuses the program. A chain's random numbers depend only on its own key, so
    sharded and vectorised runs agree. Public attributes may be changed between runs;
    the next run uses them.

    Parameters
    ----------
    model
        A NumPyro model function, or a diffusion model (a single prior site ``"x"``).
    kernel
        ``"mala"`` or ``"hmc"`` (Metropolis-corrected), ``"ula"`` or ``"uhmc"``
        (unadjusted; work with score-only models).
    num_chains
        Independent chains, vectorised.
    steps_per_level
        Kernel steps at each level; 0 with ``predictor="ddpm"`` is plain reverse
        diffusion with the summed scores.
    levels
        As in :meth:`VPSchedule.walk_levels`: ``None`` for every level from the
        schedule's ``first_conditioned_level`` down, an int ``n`` for ``n`` evenly
        spaced levels from there, or a strictly decreasing sequence (0 is appended).
        Every walk ends at ``t = 0``.
    step_size
        A float (fixed), a ``(L,)`` array (one per level), ``"sigma"`` (the kernel's
        rule in ``sigma_t``), ``"beta"`` (Du et al.'s image-code rule in ``beta_t``,
        with mass ``beta_t`` for HMC / U-HMC; made for linear schedules), or ``None``:
        adaptation for MALA / HMC, ``"sigma"`` for ULA / U-HMC. With preconditioning
        step sizes are in units of each coordinate's scale at the level.
    target_accept
        Target of per-level dual-averaging adaptation (the kernel's default: MALA
        0.57, HMC 0.8); giving it turns adaptation on. A float ``step_size`` is then
        the first level's start, an array or a rule gives every level's start; by
        default each chain's first start is BlackJAX's ``find_reasonable_step_size``
        (capped at the kernel's default start) and each later level starts from the
        previous level's size (times ``min(1, sigma_t / sigma_prev)`` without
        preconditioning). Each chain adapts its own step size during the first
        ``adapt_fraction`` of every level (with preconditioning capped at the chains'
        geometric mean size);
        divergences are counted after adaptation.
    predictor
        ``"ddpm"``: one ancestral step between levels driven by the summed scores of
        the diffusion terms (priors and factors), the part of the target that changes
        with ``t`` (alone, with ``steps_per_level=0``, it ignores observations, with a
        warning); ``"guided"``: the same step with its mean moved toward the other
        terms (observations, factors) by a curvature-damped Newton step
        (:func:`~numpyro_diffusion.infer.move.likelihood_guidance`), stable for sharp
        likelihoods; ``None``: no predictor.
    num_samples
        Draws per chain at the final level.
    chain_method
        ``"vectorized"`` or ``"sharded"`` (chains spread over all devices).
    progress_bar
        Show progress over levels.
    adapt_fraction
        Fraction of each level's steps spent adapting the step size.
    adapt_gamma
        Dual averaging's ``gamma``; a few steps per level want a gentler value than
        BlackJAX's 0.05.
    num_integration_steps, damping, divergence_threshold
        Kernel options (leapfrog steps of HMC / U-HMC, U-HMC momentum damping,
        energy error counted as a divergence by MALA and HMC).
    precondition
        Give every kernel a diagonal mass (Langevin preconditioner) estimated at each
        level from all chains' spread and gradients
        (:func:`~numpyro_diffusion.infer.move.chain_preconditioner`), so latents of
        other scales than the diffusion sites (a noise scale, a regression weight)
        move at their own scale. ``None`` (default): on unless step sizes are given in
        absolute units (a number, an array, or ``"beta"``); ``True`` with a number
        makes it a step in the coordinates' units.
    energy
        ``None``: Metropolis kernels evaluate the model's energy. ``"line_integral"``
        (``"mala"`` and ``"hmc"``): they integrate each proposal's energy change from
        the score along the move instead (Sjoberg et al.), so they correct
        score-only models (eps, x0, v, score) too; never chosen silently.
    line_integral_points
        Gauss-Lobatto points of that integral, ends included (MALA: per proposal,
        default 3, Simpson's rule; HMC: per leapfrog step, default 4). The ends'
        gradients come free; each point inside costs one gradient.
    superchain_size
        Chains in consecutive groups of this size share their start point at the top
        level (Margossian et al.'s superchains), so :meth:`nested_rhat` can tell
        whether the walk forgets where it started: annealing with too few or too
        small steps leaves the chains of a group closer than independent draws.
        1 (default): every chain starts on its own.
    init_strategy
        How latent sites other than diffusion priors start at the top level: a NumPyro
        initialisation strategy (``init_to_median``, ``init_to_sample``, ...; NumPyro's
        ``init_to_uniform`` by default). Diffusion priors start from ``N(0, I)``, the
        top level's noise. A start at the prior's median keeps chains out of modes that
        only a far start reaches (a mixture's components swapped).
    keep_trajectory
        Keep every chain's position at the end of every level (``(L, C, D)``
        floats) for :meth:`get_trajectory` and the sample-cloud plots.
    chain_block_size
        Move the chains in consecutive blocks of this many (vmapped within a block)
        instead of all at once: the same draws, a smaller working set. On a CPU, blocks
        of about a thousand chains keep a network's activations in cache, which one
        batch of many thousands does not. Not with preconditioning, which pools every
        chain at every level, nor with ``chain_method="sharded"``. ``None``: all at once.
        ``"auto"`` (default): blocks of :data:`CPU_CHAIN_BLOCK` on a CPU backend where
        more chains than that move and neither of those pools them; all at once
        otherwise (an accelerator wants the whole batch).
    jump
        A move between symmetric modes that gradient steps cross too slowly:
        ``jump(rng_key, values) -> values`` on one chain's unconstrained site values
        (a dict of arrays, the model's shapes), an involution that preserves volume
        (relabel a mixture's components, swap two classes of a label map together with
        their appearance). Each chain proposes it on entering every level whose
        ``alpha_bar_t`` lies in ``jump_signal`` and accepts it by Metropolis-Hastings on
        that level's density; score-only diffusion terms' change is the line integral
        of their score on ``jump_points`` Gauss-Lobatto points (ends included, each one
        gradient), which is reliable where the noise still joins the two modes, not
        near the data (:mod:`~numpyro_diffusion.infer.jump`). ``level_stats.jump_rate``
        records the acceptance. The function is part of the compiled program's key:
        pass the same function (or an equal, hashable callable) to reuse it.
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
        precondition: bool | None = None,
        energy: str | None = None,
        line_integral_points: int | None = None,
        superchain_size: int = 1,
        chain_block_size: int | str | None = "auto",
        init_strategy: Callable | None = None,
        jump: Callable | None = None,
        jump_signal: tuple[float, float] = (0.2, 0.8),
        jump_points: int = 6,
    ):
        self.model = model
        self.kernel = kernel
        self.num_chains = num_chains
        self.steps_per_level = steps_per_level
        self.levels = levels
        self.step_size = step_size
        self.target_accept = target_accept
        self.predictor = predictor
        self.num_samples = num_samples
        self.chain_method = chain_method
        self.progress_bar = progress_bar
        self.adapt_fraction = adapt_fraction
        self.num_integration_steps = num_integration_steps
        self.damping = damping
        self.divergence_threshold = divergence_threshold
        self.keep_trajectory = keep_trajectory
        self.adapt_gamma = adapt_gamma
        self.precondition = precondition
        self.energy = energy
        self.line_integral_points = line_integral_points
        self.superchain_size = superchain_size
        self.chain_block_size = chain_block_size
        self.init_strategy = init_strategy
        self.jump = jump
        self.jump_signal = jump_signal
        self.jump_points = jump_points
        self.settings()  # refuse bad settings now, not at the first run
        if isinstance(model, Diffusion) and self._needs_energy() and not model.has_energy:
            raise self._energy_error()
        self.num_traces = 0  # compilations this sampler's runs caused
        self._result: tuple | None = None

    # ------------------------------------------------------------------ set-up

    @property
    def kernel(self) -> LevelKernel:
        """The kernel (its name may be assigned: ``sampler.kernel = "hmc"``)."""
        return get_kernel(self._kernel_name, **self._kernel_options())

    @kernel.setter
    def kernel(self, name: str) -> None:
        if isinstance(name, LevelKernel):
            name = name.name
        if name not in KERNELS:
            raise ValueError(
                f"unknown kernel {name!r}; valid kernels are {', '.join(sorted(KERNELS))}."
            )
        self._kernel_name = name

    def _kernel_options(self) -> dict[str, Any]:
        return {
            "num_integration_steps": self.num_integration_steps,
            "damping": self.damping,
            "divergence_threshold": self.divergence_threshold,
            "energy": self.energy,
            "line_integral_points": self.line_integral_points,
        }

    @property
    def adapt(self) -> bool:
        """Whether step sizes are adapted (MALA / HMC by default, or ``target_accept``)."""
        return self.target_accept is not None or (self.step_size is None and self.kernel.adaptable)

    @property
    def preconditioned(self) -> bool:
        """Whether the walk preconditions its kernels (see ``precondition``)."""
        if self.precondition is not None:
            return bool(self.precondition)
        return self.step_size is None or (
            isinstance(self.step_size, str) and self.step_size == "sigma"
        )

    def settings(self) -> WalkSettings:
        """The walk's settings from the current attributes; raises on bad values."""
        kernel = self.kernel
        _check_int("num_chains", self.num_chains, 1)
        _check_int("steps_per_level", self.steps_per_level, 0)
        _check_int("num_samples", self.num_samples, 1)
        _check_int("num_integration_steps", self.num_integration_steps, 1)
        check_predictor(self.predictor)
        if self.chain_method not in CHAIN_METHODS:
            raise ValueError(
                f"unknown chain_method {self.chain_method!r}; expected one of "
                f"{', '.join(CHAIN_METHODS)}."
            )
        if self.steps_per_level == 0 and self.predictor is None:
            raise ValueError(
                "steps_per_level=0 with predictor=None does nothing; use predictor='ddpm' "
                "for reverse diffusion or steps_per_level > 0 for MCMC."
            )
        if self.init_strategy is not None and not callable(self.init_strategy):
            raise TypeError(
                f"init_strategy must be a NumPyro initialisation strategy (a callable such "
                f"as numpyro.infer.init_to_median), got {self.init_strategy!r}."
            )
        if self.target_accept is not None and not 0.0 < self.target_accept < 1.0:
            raise ValueError(f"target_accept must lie in (0, 1), got {self.target_accept}.")
        if not 0.0 <= self.adapt_fraction < 1.0:
            raise ValueError(f"adapt_fraction must lie in [0, 1), got {self.adapt_fraction}.")
        if not 0.0 <= self.damping < 1.0:
            raise ValueError(f"damping must lie in [0, 1), got {self.damping}.")
        if not self.divergence_threshold > 0:
            raise ValueError(
                f"divergence_threshold must be positive, got {self.divergence_threshold}."
            )
        step = self.step_size
        if self.adapt and not kernel.adaptable:
            raise ValueError(
                f"step-size adaptation needs a Metropolis kernel ('mala' or 'hmc'); "
                f"'{kernel.name}' has no acceptance to adapt to. Give step_size (a float, an "
                "array of one per level, 'sigma' or 'beta')."
            )
        if isinstance(step, str) and step not in STEP_RULES:
            raise ValueError(
                f"unknown step_size {step!r}; expected a number, an array, 'sigma' or 'beta'."
            )
        if step is not None and not isinstance(step, str):
            arr = np.asarray(step, dtype=np.float64)
            if arr.ndim > 1 or not np.all(arr > 0):
                raise ValueError(
                    f"step_size must be a positive number or a 1-D array of positive numbers "
                    f"(one per level), got {step!r}."
                )
        _check_int("superchain_size", self.superchain_size, 1)
        if self.superchain_size > 1 and (
            self.num_chains % self.superchain_size or self.num_chains // self.superchain_size < 2
        ):
            raise ValueError(
                f"superchain_size ({self.superchain_size}) must divide num_chains "
                f"({self.num_chains}) into at least 2 superchains."
            )
        if self.precondition is not None and not isinstance(self.precondition, bool):
            raise ValueError(
                f"precondition must be True, False or None, got {self.precondition!r}."
            )
        if self.preconditioned and isinstance(step, str) and step == "beta":
            raise ValueError(
                "the 'beta' step rule fixes its own mass (beta_t) and cannot be combined with "
                "preconditioning; use precondition=False (or None) with step_size='beta'."
            )
        block = self.resolve_chain_block_size()
        if block is not None:
            _check_int("chain_block_size", block, 1)
            if self.chain_method == "sharded":
                raise ValueError(
                    "chain_block_size splits the chains of one device into blocks; with "
                    "chain_method='sharded' the devices split them already. Drop one."
                )
            if self.preconditioned and self.steps_per_level > 0:
                raise ValueError(
                    "chain_block_size moves blocks of chains one after another, but "
                    "preconditioning pools every chain at every level; give a fixed "
                    "step_size with precondition=False, or drop chain_block_size."
                )
        if self.jump is not None:
            if not callable(self.jump):
                raise TypeError(
                    f"jump must be a function (rng_key, site values) -> site values, got "
                    f"{self.jump!r}."
                )
            check_jump_signal(self.jump_signal)
            _check_int("jump_points", self.jump_points, 2)
        adapting = self.adapt
        given_each_level = step is not None and (isinstance(step, str) or np.ndim(step) == 1)
        move = MoveSettings(
            num_steps=int(self.steps_per_level),
            num_adapt_steps=int(self.adapt_fraction * self.steps_per_level) if adapting else 0,
            predictor=self.predictor,
            start_rule="given" if given_each_level else "previous",
            search_first_step=adapting and step is None and self.steps_per_level > 0,
            target_accept=float(
                self.target_accept
                if self.target_accept is not None
                else (kernel.target_accept or 0.65)
            ),
            adapt_gamma=float(self.adapt_gamma),
            precondition=self.preconditioned and self.steps_per_level > 0,
            jump=self.jump,
            jump_points=int(self.jump_points),
        )
        return WalkSettings(
            kernel.name,
            tuple(sorted(self._kernel_options().items())),
            move,
            int(self.num_samples),
            bool(self.keep_trajectory),
            bool(self.progress_bar),
            self.chain_method,
            None if block is None else int(block),
            self.init_strategy,
        )

    def resolve_chain_block_size(self) -> int | None:
        """The block size the walk uses: ``chain_block_size`` with ``"auto"`` resolved
        for the current backend, chain count and preconditioning."""
        if isinstance(self.chain_block_size, str):
            if self.chain_block_size != "auto":
                raise ValueError(
                    f"unknown chain_block_size {self.chain_block_size!r}; give a positive "
                    "int, None (all chains at once) or 'auto'."
                )
            pooled = self.chain_method == "sharded" or (
                self.preconditioned and self.steps_per_level > 0
            )
            on_cpu = jax.default_backend() == "cpu"
            many = (
                isinstance(self.num_chains, (int, np.integer)) and self.num_chains > CPU_CHAIN_BLOCK
            )
            return CPU_CHAIN_BLOCK if on_cpu and many and not pooled else None
        return self.chain_block_size

    def resolve_levels(self, schedule: VPSchedule) -> np.ndarray:
        """The levels walked, as a decreasing integer array ending at 0."""
        return schedule.walk_levels(self.levels)

    def level_params(self, schedule: VPSchedule) -> LevelParams:
        """The walk's levels with their step sizes (or adaptation starts) and masses."""
        levels = self.resolve_levels(schedule)
        kernel, step = self.kernel, self.step_size
        inverse_mass = np.ones(levels.shape, np.float32)
        if step is None:
            rule = None if self.adapt else "sigma"
            steps = np.full(levels.shape, kernel.initial_step_size, np.float32)
        else:
            rule = step if isinstance(step, str) else None
            arr = np.asarray(step, dtype=np.float32) if rule is None else None
            if arr is not None and arr.ndim == 1 and arr.shape != levels.shape:
                raise ValueError(
                    f"step_size has shape {arr.shape}; give one number or one per level "
                    f"({levels.size} levels)."
                )
            steps = None if arr is None else np.broadcast_to(arr, levels.shape)
        if rule is not None:
            steps, inverse_mass = kernel.rule_step_sizes(
                rule, schedule, levels, preconditioned=self.preconditioned
            )
        t_prev = np.concatenate([levels[:1], levels[:-1]])
        jump = np.zeros(levels.shape, bool)
        if self.jump is not None:
            low, high = check_jump_signal(self.jump_signal)
            signal = np.asarray(schedule.alpha_bars)[levels]
            jump = (signal >= low) & (signal <= high)
        return LevelParams(
            jnp.asarray(levels),
            jnp.asarray(t_prev),
            jnp.asarray(steps, jnp.float32),
            jnp.asarray(inverse_mass, jnp.float32),
            jnp.asarray(jump),
        )

    # --------------------------------------------------------------------- run

    def run(self, rng_key: Array, *args: Any, **kwargs: Any) -> None:
        """Walk every level and draw ``num_samples`` per chain at ``t = 0``.

        ``args`` and ``kwargs`` go to the model; arrays among them (and diffusion
        models, whose parameters are arrays) are traced, so a second call with the
        same shapes reuses the compiled program.
        """
        settings = self.settings()
        model_fn, lead = as_numpyro_model(self.model)
        split = split_arguments((*lead, *args), kwargs)
        cache_key = (model_fn, settings, split.key)
        compiled = _WALKS.get(cache_key)
        keys = self._walk_keys(rng_key)
        if compiled is None:
            # Tracing the model happens once per model and argument structure; the
            # start-point search and the walk are one compiled program. One key and no
            # gradient: the structure is all that is needed here, and a batch of keys
            # would compile the model's gradient a second time, outside the walk.
            family, _ = initialize_potential(
                keys[0][0],
                model_fn,
                *split.rebuild(split.dynamic),
                check_gradient=False,
                init_strategy=settings.init_strategy,
            )
            if self._needs_energy() and not family.has_energy:
                raise self._energy_error()
            if family.schedule is None:
                raise ValueError(
                    "the model has no diffusion_prior or diffusion_factor site, so it has no "
                    "noise levels to anneal over."
                )
            compiled = self._compile(settings, family, split.rebuild)
            _WALKS[cache_key] = compiled
            while len(_WALKS) > _MAX_WALKS:
                _WALKS.popitem(last=False)
        _WALKS.move_to_end(cache_key)
        family = compiled.family
        if (
            settings.move.num_steps == 0
            and settings.move.predictor == "ddpm"
            and family.other_sites
        ):
            warnings.warn(
                "steps_per_level=0 with predictor='ddpm' is reverse diffusion of the diffusion "
                f"sites alone: the sites {list(family.other_sites)} (observations, factors, "
                "other priors) are ignored and their latents never move. Use "
                "predictor='guided' (reverse diffusion steered by them) or steps_per_level > 0.",
                stacklevel=2,
            )
        params = self.level_params(family.schedule)
        if settings.chain_method == "sharded":
            keys = self._shard(*keys)
        traces = compiled.traces[0]
        self._result = gather(compiled.walk(*keys, params, split.dynamic))
        self.num_traces += compiled.traces[0] - traces
        self._unravel = family.unravel_fn
        self._settings = settings
        self._result_superchain_size = self.superchain_size
        self._call = (model_fn, split.rebuild(split.dynamic))
        if self.superchain_size > 1:
            flagged = [name for name, r in self.nested_rhat().items() if np.any(r.flagged)]
            if flagged and is_main_process():
                warnings.warn(
                    f"chains that shared a start still agree at t = 0 on {flagged} (nested "
                    "R-hat above what independent chains give; see print_summary()): the walk "
                    "does not forget its start, so its draws are biased toward it. Take more "
                    "steps per level, more levels, or larger steps.",
                    stacklevel=2,
                )
        total = self.num_divergent
        if total and is_main_process():
            warnings.warn(
                f"{total} divergent transitions (non-finite or energy error above "
                f"divergence_threshold) were rejected. See print_summary() for the levels.",
                stacklevel=2,
            )

    def _needs_energy(self) -> bool:
        return self.kernel.needs_energy

    def _energy_error(self) -> EnergyUnavailableError:
        return EnergyUnavailableError(f"The model given to the '{self.kernel.name}' sampler")

    def _walk_keys(self, rng_key: Array) -> tuple[Array, Array]:
        """The walk's keys: each chain's start key and walk key, ``(num_chains, 2)`` each
        (the first is also the start-point search's while tracing)."""
        init_key, walk_key = jax.random.split(rng_key)
        M = self.superchain_size
        return (
            jnp.repeat(jax.random.split(init_key, self.num_chains // M), M, axis=0),
            jax.random.split(walk_key, self.num_chains),
        )

    def _shard(self, *arrays: Array) -> tuple[Array, ...]:
        devices = jax.device_count()
        if self.num_chains % devices:
            raise ValueError(
                f"chain_method='sharded' needs num_chains ({self.num_chains}) divisible by the "
                f"number of devices ({devices}, over {jax.process_count()} process(es))."
            )
        return shard_chains(*arrays)

    def _compile(self, settings: WalkSettings, family: PotentialFamily, rebuild) -> _Compiled:
        kernel = get_kernel(settings.kernel, **dict(settings.kernel_options))
        S, keep = settings.num_samples, settings.keep_trajectory

        traces = [0]

        def walk(init_keys, chain_keys, params: LevelParams, dynamic):
            traces[0] += 1
            what = f"annealed {kernel.name}" if settings.move.num_steps else "reverse diffusion"
            announce_compiling(
                f"{what} walk ({params.t.shape[0]} levels, {init_keys.shape[0]} chains)",
                settings.progress_bar,
            )
            args, kwargs = rebuild(dynamic)
            potential = family.at(args, kwargs)
            move = build_move(kernel, potential, settings.move)
            first = jax.tree.map(lambda a: a[0], params)
            # every evaluation over all chains goes a block at a time when blocks are set
            chains = functools.partial(over_chains, block=settings.chain_block_size)
            z0 = chains(lambda key, _: family.init_fn(key[None], args, kwargs)[0], init_keys)
            state = chains(move.init, init_keys, z0, shared=first)

            def level_body(state, i_level):
                i, level = i_level
                keys = jax.vmap(jax.random.fold_in, (0, None))(chain_keys, i)
                state, info = chains(move.step, keys, state, shared=level)
                stats = LevelStats(
                    level.t,
                    jnp.median(info.step_size),
                    jnp.mean(info.acceptance_rate),
                    jnp.sum(info.num_divergent),
                    jnp.mean(info.potential),
                    info.log_weight,  # [C] for now: the ESS comes after the scan
                    jnp.mean(info.jump_accepted),
                )
                last = (info.last_acceptance, info.last_divergent, info.last_energy)
                return state, (stats, last, state.position if keep else None)

            L = params.t.shape[0]
            state, (level_stats, lasts, trajectory) = progress_scan(
                level_body,
                state,
                params,
                length=L,
                label=f"annealed {kernel.name}" if settings.move.num_steps else "reverse diffusion",
                enabled=settings.progress_bar,
            )
            level_stats = level_stats._replace(
                weight_ess=weight_ess(jnp.cumsum(level_stats.weight_ess, axis=0))
            )
            final = jax.tree.map(lambda a: a[-1], params)
            accepts, divs, energies = (x[-1][None] for x in lasts)
            positions = state.position[None]
            if S > 1:
                if settings.move.num_steps == 0:  # reverse diffusion: no kernel state yet
                    state = chains(move.init, init_keys, state.position, shared=final)
                draw_keys = jax.vmap(jax.random.fold_in, (0, None))(chain_keys, L)

                def draw_body(state, j):
                    keys = jax.vmap(jax.random.fold_in, (0, None))(draw_keys, j)
                    state, info = chains(move.draw, keys, state, shared=final)
                    return state, (
                        state.position,
                        info.acceptance_rate,
                        info.is_divergent,
                        info.energy,
                    )

                state, (more_pos, more_acc, more_div, more_energy) = jax.lax.scan(
                    draw_body, state, jnp.arange(S - 1)
                )
                energies = jnp.concatenate([energies, more_energy])
                positions = jnp.concatenate([positions, more_pos])
                accepts = jnp.concatenate([accepts, more_acc])
                divs = jnp.concatenate([divs, more_div])
            positions = jnp.swapaxes(positions, 0, 1)  # [C, S, D]
            t_final = final.t
            if family.has_energy:
                lp = -chains(jax.vmap(potential.potential_fn, (0, None)), positions, shared=t_final)
            else:
                lp = jnp.full(positions.shape[:2], jnp.nan)
            samples = jax.vmap(jax.vmap(lambda p: family.constrain_fn(p, t_final, args, kwargs)))(
                positions
            )
            samples["_flat"] = positions
            if keep:
                samples["_trajectory"] = trajectory
            step_size = jnp.broadcast_to(state.step_size[:, None], positions.shape[:2])
            draw_stats = DrawStats(accepts.T, divs.T, lp, step_size, energies.T)
            return samples, draw_stats, level_stats

        return _Compiled(family, jax.jit(walk), traces)

    # ----------------------------------------------------------------- results

    def _require_run(self) -> tuple:
        if self._result is None:
            raise RuntimeError("no samples yet: call run(rng_key, *args, **kwargs) first.")
        return self._result

    def get_samples(self, group_by_chain: bool = False) -> dict[str, Array]:
        """Samples by site name: ``(num_chains, num_samples, ...)`` if ``group_by_chain``,
        else ``(num_chains * num_samples, ...)``."""
        samples = {k: v for k, v in self._require_run()[0].items() if not k.startswith("_")}
        if group_by_chain:
            return samples
        return {k: v.reshape((-1, *v.shape[2:])) for k, v in samples.items()}

    def get_extra_fields(self, group_by_chain: bool = False) -> dict[str, Any]:
        """Per-draw statistics (``acceptance_rate``, ``diverging``, ``lp``, ``step_size``,
        shaped like the samples' leading axes) and the per-level statistics under
        ``"levels"``."""
        draws = self.draw_stats._asdict()
        if not group_by_chain:
            draws = {k: v.reshape(-1) for k, v in draws.items()}
        draws["levels"] = self.level_stats._asdict()
        return draws

    def get_trajectory(self, site: str) -> tuple[Array, Array]:
        """The levels ``(L,)`` and the site's unconstrained value at the end of each,
        ``(L, num_chains, ...)``; needs ``keep_trajectory=True``."""
        samples = self._require_run()[0]
        if "_trajectory" not in samples:
            raise RuntimeError(
                "no trajectory was kept: build the sampler with keep_trajectory=True."
            )
        values = jax.vmap(jax.vmap(self._unravel))(samples["_trajectory"])
        if site not in values:
            raise KeyError(f"no latent site {site!r}; the sites are {sorted(values)}.")
        return self.level_stats.level, values[site]

    @property
    def level_stats(self) -> LevelStats:
        """The last run's per-level statistics, each ``(L,)`` (see :class:`LevelStats`)."""
        return self._require_run()[2]

    @property
    def draw_stats(self) -> DrawStats:
        """The last run's statistics of the final draws, each ``(num_chains, num_samples)``
        (see :class:`DrawStats`)."""
        return self._require_run()[1]

    @property
    def last_kernel(self) -> LevelKernel:
        """The kernel of the last run (the ``kernel`` attribute may have changed since)."""
        self._require_run()
        return get_kernel(self._settings.kernel, **dict(self._settings.kernel_options))

    @property
    def num_divergent(self) -> int:
        """Divergent transitions over the walk and the further final draws (draw 0's
        transition is the last level's last step, counted with the levels)."""
        return int(np.sum(self.level_stats.num_divergent)) + int(
            np.sum(np.asarray(self.draw_stats.diverging)[:, 1:])
        )

    def log_likelihood(self) -> dict[str, Array]:
        """Pointwise log-likelihood of every observed site at ``t = 0`` for every draw,
        ``(num_chains, num_samples, *site_batch_shape)`` by site name (for LOO / WAIC)."""
        from numpyro.infer.util import log_likelihood

        self._require_run()
        model_fn, (args, kwargs) = self._call
        samples = self.get_samples(group_by_chain=True)
        with noise_level(0):
            return log_likelihood(model_fn, samples, *args, batch_ndims=2, **kwargs)

    def observed_data(self) -> dict[str, Array]:
        """The values of the model's observed sites in the last run, by site name."""
        self._require_run()
        model_fn, (args, kwargs) = self._call
        first = jax.tree.map(lambda v: v[0, 0], self.get_samples(group_by_chain=True))
        with noise_level(0):
            trace = handlers.trace(
                handlers.seed(handlers.substitute(model_fn, data=first), 0)
            ).get_trace(*args, **kwargs)
        return {
            name: site["value"]
            for name, site in trace.items()
            if site["type"] == "sample" and site["is_observed"]
        }

    def print_summary(self, prob: float = 0.9, max_levels: int = 12) -> None:
        """The final draws' summary, then the per-level statistics.

        Annealed chains are many short independent walks: their final draws are
        independent across chains, and their error is the bias of annealing too fast,
        which no within-chain statistic sees. So the summary shows no classical R-hat
        or ESS (ArviZ computes them from :meth:`to_arviz`; there they say whether each
        chain moves between modes at ``t = 0``, which annealed chains need not do).
        """
        self._require_run()
        if not is_main_process():
            return
        samples = {k: np.asarray(v) for k, v in self.get_samples().items()}
        lo, hi = 50 * (1 - prob), 50 * (1 + prob)
        print(f"{'':>14} {'mean':>10} {'std':>10} {'median':>10} {lo:>9.1f}% {hi:>9.1f}%")
        for name, value in samples.items():
            flat = value.reshape(value.shape[0], -1)
            for j in range(flat.shape[1]):
                label = name if flat.shape[1] == 1 else f"{name}[{j}]"
                v = flat[:, j]
                q = np.percentile(v, [lo, 50, hi])
                print(
                    f"{label:>14} {v.mean():>10.4g} {v.std():>10.4g} {q[1]:>10.4g} "
                    f"{q[0]:>10.4g} {q[2]:>10.4g}"
                )
        print(self._draws_note())
        if self._result_superchain_size > 1:
            M = self._result_superchain_size
            print(
                f"\nNested R-hat of the end points ({self.num_chains // M} superchains of {M} "
                f"chains sharing a start; about {np.sqrt(1 + 1 / M):.3f} when the walk forgets "
                "its start; z: the excess over that in Monte Carlo standard deviations)"
            )
            for name, r in self.nested_rhat().items():
                worst = int(np.argmax(np.ravel(r.excess_z)))
                flag = "  FLAGGED: the walk remembers its start" if np.any(r.flagged) else ""
                print(
                    f"{name:>14} max {np.max(r.rhat):.4f}  z {np.ravel(r.excess_z)[worst]:.1f}"
                    f"{flag}"
                )
        stats = jax.tree.map(np.asarray, self.level_stats)
        L = stats.level.size
        rows = np.unique(np.round(np.linspace(0, L - 1, min(L, max_levels))).astype(int))
        columns = self._level_columns(stats)
        print(f"\nPer-level statistics ({self.last_kernel.name}, {L} levels; {len(rows)} shown)")
        print(f"{'level t':>8}" + "".join(f" {header:>11}" for header, _, _ in columns))
        for r in rows:
            cells = "".join(f" {format(values[r], fmt):>11}" for _, fmt, values in columns)
            print(f"{int(stats.level[r]):>8}{cells}")
        print(f"\nNumber of divergences: {self.num_divergent}")

    def nested_rhat(self) -> dict[str, NestedRhat]:
        """Nested R-hat of the walk's end points (draw 0), by site: see
        :func:`numpyro_diffusion.diagnostics.nested_rhat`; needs ``superchain_size > 1``."""
        self._require_run()
        if self._result_superchain_size < 2:
            raise RuntimeError(
                "nested R-hat needs chains that share a start: build the sampler with "
                "superchain_size > 1 (for example 16)."
            )
        samples = self.get_samples(group_by_chain=True)
        return {
            name: nested_rhat(np.asarray(v)[:, 0], self._result_superchain_size)
            for name, v in samples.items()
        }

    def _draws_note(self) -> str:
        C, S, M = self.num_chains, self._settings.num_samples, self._result_superchain_size
        chains = f"{C} independent chains" if M == 1 else f"{C} chains ({C // M} starts)"
        return (
            f"({chains} x {S} draws at t = 0; draws of one chain are correlated, so at "
            f"most about {C} are independent)"
        )

    @staticmethod
    def _level_columns(stats: Any) -> list[tuple[str, str, np.ndarray]]:
        """(header, format, values) of the per-level table's columns."""
        return [
            ("step size", ".4g", stats.step_size),
            ("accept", ".3f", stats.acceptance_rate),
            ("diverg.", "d", stats.num_divergent.astype(int)),
            ("mean U", ".4g", stats.mean_potential),
        ]

    def to_arviz(self, dims: dict | None = None, coords: dict | None = None):
        """The draws and statistics as ``arviz.InferenceData`` (see ``diagnostics.to_arviz``)."""
        from numpyro_diffusion.diagnostics import to_arviz

        return to_arviz(self, dims=dims, coords=coords)


def weight_ess(log_weights: Array) -> Array:
    """Effective sample size of importance weights over the last axis (chains), as a
    fraction of their number: ``(sum w)^2 / (n sum w^2)``; NaN where any is NaN."""
    n = log_weights.shape[-1]
    lw = log_weights - jnp.max(log_weights, axis=-1, keepdims=True)
    s1 = jax.scipy.special.logsumexp(lw, axis=-1)
    s2 = jax.scipy.special.logsumexp(2 * lw, axis=-1)
    return jnp.exp(2 * s1 - s2) / n


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
