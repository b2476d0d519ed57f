"""Plug-and-play point estimates (Graikos et al., 2022) with NumPyro's SVI and a delta guide.

Every ``diffusion_prior`` (and ``diffusion_factor``) site contributes the denoising
loss ``weight * ||eps - eps_theta(sqrt(abar_t) x + sigma_t eps, t)||^2`` for a fresh
``eps`` at the step's level ``t``; every other site (observations, ``numpyro.factor``
constraints, ordinary priors) contributes its usual log-density, optionally scaled by
a decaying ``constraint_weight``. The sum is minimised over a point estimate of the
latent sites (``AutoDelta``). The loss needs only ``eps``, so score-only models work.
"""

from __future__ import annotations

import functools
import warnings
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array
from numpyro import handlers
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoDelta
from numpyro.infer.util import potential_energy
from numpyro.primitives import Messenger

from numpyro_diffusion.infer.arguments import split_arguments
from numpyro_diffusion.infer.multihost import gather, shard_chains
from numpyro_diffusion.infer.potential import (
    as_numpyro_model,
    check_observations,
    init_to_diffusion_noise,
    without_diffusion,
)
from numpyro_diffusion.interface import shared_schedule
from numpyro_diffusion.primitives import (
    DiffusionFactor,
    DiffusionPrior,
    diffusion_sites,
    noise_level,
)

__all__ = ["plug_and_play", "PlugAndPlayResult", "graikos_schedule", "linear_schedule"]

_CACHE: OrderedDict = OrderedDict()  # compiled runs, least recently used first
_CACHE_SIZE = 32


class PlugAndPlayResult(NamedTuple):
    params: dict[str, Array]  # constrained point estimates by site name
    losses: Array  # [num_steps] the objective at every step
    levels: Array  # [num_steps] the level t of every step


def graikos_schedule(num_steps: int, num_levels: int) -> np.ndarray:
    """Graikos et al.'s annealed levels with a cosine wiggle:
    ``t_i = ((S - i) + (S - i) // 3 * cos(i / 50)) / S * T`` for ``i < S``."""
    i = np.arange(num_steps)
    s = num_steps
    t = ((s - i) + (s - i) // 3 * np.cos(i / 50)) / s * num_levels
    return np.clip(np.round(t), 0, num_levels - 1).astype(np.int32)


def linear_schedule(num_steps: int, num_levels: int) -> np.ndarray:
    """Levels falling linearly from ``T - 1`` to 0."""
    return np.round(np.linspace(num_levels - 1, 0, num_steps)).astype(np.int32)


class _denoising(Messenger):
    """Swaps diffusion sites' log-densities for the negative denoising loss and scales the
    other sites by the constraint weight."""

    def __init__(self, rng_key: Array, constraint_weight: Array, fn=None):
        self.rng_key = rng_key
        self.constraint_weight = constraint_weight
        self.count = 0
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] != "sample":
            return
        base = diffusion_sites({msg["name"]: msg}).get(msg["name"])
        if base is not None:
            key = jax.random.fold_in(self.rng_key, self.count)
            self.count += 1
            weight = base.weight if isinstance(base, DiffusionFactor) else 1.0
            msg["fn"] = _DenoisingLoss(base, key, weight).expand(msg["fn"].batch_shape)
        else:
            scale = msg.get("scale")
            msg["scale"] = self.constraint_weight * (1.0 if scale is None else scale)


class _DenoisingLoss(DiffusionPrior):
    """``log_prob(x) = -weight * ||eps - eps_theta(sqrt(abar_t) x + sigma_t eps, t)||^2``."""

    pytree_data_fields = ("key", "weight")

    def __init__(self, site: Any, key: Array, weight: Any):
        super().__init__(site.model, site.cond, site.t)
        self.key, self.weight = key, weight

    def log_prob(self, value):
        model, t = self.model, self.t
        event_ndim = len(model.event_shape)
        batch_shape = value.shape[: value.ndim - event_ndim]
        flat = value.reshape((-1, *model.event_shape))
        eps = jax.random.normal(self.key, flat.shape)
        x_t = model.schedule.noise(flat, eps, t)
        eps_hat = jax.vmap(lambda x: model.eps(x, t, self.cond))(x_t)
        loss = jnp.sum((eps - eps_hat) ** 2, axis=tuple(range(1, flat.ndim)))
        return -self.weight * loss.reshape(batch_shape)


def plug_and_play(
    model: Any,
    rng_key: Array,
    *model_args: Any,
    num_steps: int,
    t_schedule: str | Callable[[int], int] | np.ndarray = "graikos",
    optimizer: optax.GradientTransformation | None = None,
    constraint_weight: float | Callable[[Array], Array] = 1.0,
    init_values: dict[str, Array] | None = None,
    in_axes: tuple[int | None, ...] | None = None,
    chain_method: str = "vectorized",
    **model_kwargs: Any,
) -> PlugAndPlayResult:
    """Graikos et al.'s plug-and-play point estimate for a NumPyro model.

    The optimisation is one compiled program, cached per model, argument structure
    and shapes, number of steps and optimizer: calls in a loop over images or
    instances (same shapes) compile once. Diffusion models passed as arguments are
    data, like arrays.

    Parameters
    ----------
    model
        A NumPyro model with ``diffusion_prior`` sites (or a bare diffusion model).
    rng_key
        Seeds the initial point and every step's noise.
    num_steps
        Optimisation steps.
    t_schedule
        ``"graikos"`` (annealed with a cosine wiggle), ``"linear"``, an array of
        ``num_steps`` levels, or a callable ``step -> t``.
    optimizer
        An optax transformation; by default Adam with a learning rate decaying from
        0.1 to 0.001 (cosine), so the estimate settles as the levels reach 0.
    constraint_weight
        A float or a callable ``step -> weight`` (for example a linear decay) scaling
        every non-diffusion site's log-density.
    init_values
        Optional starting values by site name (constrained); other diffusion sites
        start from ``N(0, I)`` and other sites as NumPyro's ``init_to_uniform``.
    in_axes
        Solve a batch of independent problems in one compiled program (as
        ``jax.vmap``): one entry per model argument, ``0`` where the argument's arrays
        carry a leading batch axis of ``B`` problems, ``None`` where it is shared (a
        diffusion model, say). ``init_values`` then carry the batch axis too; keyword
        arguments are shared; each problem draws its own noise from ``rng_key``.
    chain_method
        With ``in_axes``: ``"vectorized"`` (the batch on one device) or ``"sharded"``
        (the batch split over every device of every process, as ``AnnealedMCMC``
        shards chains; the results are gathered to every process).

    Returns
    -------
    :class:`PlugAndPlayResult` with ``params`` (constrained values by site name),
    ``losses`` ``(num_steps,)`` and the ``levels`` used; with ``in_axes``, ``params``
    and ``losses`` gain a leading axis ``B``.

    A point estimate of a latent scale jointly with the state it scales (an unknown
    noise level ``sigma`` of ``y ~ Normal(x, sigma)``) degenerates: once ``x`` fits ``y``
    the likelihood grows without bound as ``sigma`` shrinks, and the estimate returns
    the observation. A bounded latent that ends beyond its prior's tail with its
    log-density still rising toward the edge is warned about; fix such a scale or sample it with
    :class:`~numpyro_diffusion.infer.AnnealedMCMC`.
    """
    if not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}.")
    if chain_method not in ("vectorized", "sharded"):
        raise ValueError(
            f"unknown chain_method {chain_method!r}; expected 'vectorized' or 'sharded'."
        )
    if chain_method == "sharded" and in_axes is None:
        raise ValueError("chain_method='sharded' splits a batch: give in_axes as well.")
    model_fn, lead = as_numpyro_model(model)
    args = (*lead, *model_args)
    batch = None
    if in_axes is not None:
        batch = _Batch.of(args, (None,) * len(lead), in_axes, init_values)
    if optimizer is None:
        optimizer = _default_optimizer(int(num_steps))
    first = args if batch is None else batch.problem(args, 0)
    levels = _levels(model_fn, t_schedule, num_steps, first, model_kwargs)
    if batch is not None:
        for b in batch.nonfinite_problems(args):  # names the observed site, if it is one
            _levels(model_fn, t_schedule, num_steps, batch.problem(args, b), model_kwargs)
    weights = jnp.asarray(
        [constraint_weight(i) for i in range(num_steps)]
        if callable(constraint_weight)
        else np.full(num_steps, constraint_weight),
        jnp.float32,
    )
    split = split_arguments((args, init_values or {}), model_kwargs)
    key = (model_fn, int(num_steps), optimizer, split.key, None if batch is None else batch.axes)
    run = _CACHE.pop(key, None)
    axes = None if batch is None else batch.leaf_axes(args, init_values or {}, model_kwargs, split)
    if run is None:
        run = _program(model_fn, optimizer, int(num_steps), split.rebuild)
        if batch is not None:
            run = jax.vmap(run, in_axes=(0, None, None, axes))
        run = jax.jit(run)
    _CACHE[key] = run
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    if batch is None:
        params, losses = run(rng_key, levels, weights, split.dynamic)
        _warn_at_support_edge(model_fn, args, model_kwargs, params)
    else:
        keys = jax.random.split(rng_key, batch.size)
        dynamic = split.dynamic
        if chain_method == "sharded":
            if batch.size % jax.device_count():
                raise ValueError(
                    f"chain_method='sharded' needs the batch ({batch.size}) divisible by the "
                    f"{jax.device_count()} devices; pad it or use 'vectorized'."
                )
            (keys,) = shard_chains(keys)
            dynamic = [
                shard_chains(x)[0] if ax == 0 else x for x, ax in zip(dynamic, axes, strict=True)
            ]
        params, losses = gather(run(keys, levels, weights, dynamic))
        for b in range(batch.size):
            one = jax.tree.map(lambda x, b=b: x[b], params)
            if _warn_at_support_edge(model_fn, batch.problem(args, b), model_kwargs, one):
                break
    return PlugAndPlayResult(params, losses, levels)


class _Batch(NamedTuple):
    """Which model arguments carry the leading batch axis of independent problems."""

    axes: tuple[int | None, ...]  # per argument (the bare model's lead included)
    size: int

    @classmethod
    def of(cls, args, lead_axes, in_axes, init_values) -> _Batch:
        in_axes = tuple(in_axes)
        if len(in_axes) != len(args) - len(lead_axes):
            raise ValueError(
                f"in_axes has {len(in_axes)} entries for {len(args) - len(lead_axes)} model "
                "arguments: give one per argument (0 batched, None shared)."
            )
        if any(a not in (0, None) for a in in_axes):
            raise ValueError(f"in_axes entries must be 0 (batched) or None (shared): {in_axes}.")
        axes = (*lead_axes, *in_axes)
        batched = [a for a, ax in zip(args, axes, strict=True) if ax == 0]
        batched.append(init_values or {})
        sizes = set()
        for leaf in jax.tree.leaves(batched):
            if not isinstance(leaf, (jax.Array, np.ndarray)) or np.ndim(leaf) == 0:
                raise ValueError(
                    f"a batched argument (in_axes 0) or init value holds {type(leaf).__name__} "
                    f"of shape {np.shape(leaf)}: every leaf needs a leading batch axis."
                )
            sizes.add(np.shape(leaf)[0])
        if len(sizes) != 1:
            raise ValueError(
                f"the batched arguments disagree on the batch size: leading axes {sorted(sizes)}."
                if sizes
                else "in_axes batches no argument: mark at least one argument 0."
            )
        return cls(axes, sizes.pop())

    def problem(self, args: tuple, b: int) -> tuple:
        """The arguments of problem ``b``."""
        return tuple(
            a if ax is None else jax.tree.map(lambda x: x[b], a)
            for a, ax in zip(args, self.axes, strict=True)
        )

    def nonfinite_problems(self, args: tuple) -> list[int]:
        """Problems whose batched floating-point arguments hold NaN or inf."""
        bad = np.zeros(self.size, bool)
        for a, ax in zip(args, self.axes, strict=True):
            for leaf in jax.tree.leaves(a) if ax == 0 else ():
                leaf = np.asarray(leaf)
                if np.issubdtype(leaf.dtype, np.inexact):
                    bad |= ~np.isfinite(leaf.reshape(self.size, -1)).all(axis=1)
        return list(np.flatnonzero(bad))

    def leaf_axes(self, args, init_values, kwargs, split) -> list[int | None]:
        """The batch axis of every traced leaf of ``split`` (same order)."""
        axes = [ax for a, ax in zip(args, self.axes, strict=True) for _ in jax.tree.leaves(a)]
        axes += [0] * len(jax.tree.leaves(init_values)) + [None] * len(jax.tree.leaves(kwargs))
        leaves = jax.tree.leaves(((args, init_values), kwargs))
        dynamic = [isinstance(x, (jax.Array, np.ndarray)) for x in leaves]
        axes = [ax for ax, d in zip(axes, dynamic, strict=True) if d]
        assert len(axes) == len(split.dynamic)
        return axes


def _warn_at_support_edge(model_fn, args, kwargs, params, num_prior_draws=2000) -> bool:
    """Warn when a bounded non-diffusion latent ends beyond its prior's 1 % tail with its
    log-density still rising toward the edge of its support (no interior optimum); say
    whether it did."""
    with (
        handlers.block(),
        handlers.trace() as trace,
        handlers.substitute(data=params),
        handlers.seed(rng_seed=0),
        noise_level(0),
    ):
        model_fn(*args, **kwargs)
    diffusion = diffusion_sites(trace)
    latent = {
        name: site
        for name, site in trace.items()
        if site["type"] == "sample" and not site["is_observed"]
    }
    unconstrained = {
        name: biject_to(site["fn"].support).inv(site["value"]) for name, site in latent.items()
    }

    def log_density(u, name):
        values = {**unconstrained, name: u}
        with noise_level(0):
            return -potential_energy(without_diffusion(model_fn), args, kwargs, values)

    for name, site in latent.items():
        support = site["fn"].support
        if name in diffusion or support.is_discrete:
            continue
        base_support = getattr(support, "base_constraint", support)  # unwrap independent
        if base_support in (constraints.real, constraints.real_vector):
            continue  # unbounded: no edge to run into
        to_support = biject_to(support)
        try:
            draws = site["fn"].sample(jax.random.PRNGKey(0), (num_prior_draws,))
        except NotImplementedError:  # an improper prior has no tail to compare with
            continue
        low, high = np.quantile(np.asarray(to_support.inv(draws)), [0.01, 0.99])
        u = np.asarray(unconstrained[name])
        push = np.asarray(jax.grad(log_density)(unconstrained[name], name))
        toward_edge = ((u < low) & (push < -0.5)) | ((u > high) & (push > 0.5))
        if np.any(toward_edge):
            value = np.asarray(site["value"])
            warnings.warn(
                f"plug_and_play: latent site {name!r} ended at {value.ravel()[:3]}, beyond its "
                "prior's 1 % tail, with its log-density still rising toward the edge of its "
                "support. A joint point estimate of a state and its own noise scale "
                "degenerates: once the state fits the data, shrinking the scale makes the "
                "likelihood grow without bound. Fix the scale (pass it as data) or sample it "
                "(AnnealedMCMC gives its posterior).",
                stacklevel=3,
            )
            return True
    return False


@functools.lru_cache(maxsize=16)
def _default_optimizer(num_steps: int) -> optax.GradientTransformation:
    return optax.adam(optax.cosine_decay_schedule(0.1, num_steps, alpha=0.01))


def _program(model_fn: Callable, optimizer, num_steps: int, rebuild: Callable) -> Callable:
    """The optimisation as a pure function of (key, levels, weights, traced leaves)."""

    def wrapped(t, key, weight, *args, **kwargs):
        with noise_level(t), _denoising(key, weight):
            return model_fn(*args, **kwargs)

    def run(rng_key, levels, weights, dynamic):
        (args, init_values), kwargs = rebuild(dynamic)
        guide = AutoDelta(wrapped, init_loc_fn=init_to_diffusion_noise(values=init_values))
        svi = SVI(wrapped, guide, optimizer, loss=Trace_ELBO())
        init_key, loop_key = jax.random.split(rng_key)
        state = svi.init(init_key, levels[0], loop_key, weights[0], *args, **kwargs)

        def body(state, i):
            return svi.update(
                state, levels[i], jax.random.fold_in(loop_key, i), weights[i], *args, **kwargs
            )

        state, losses = jax.lax.scan(body, state, jnp.arange(num_steps))
        return guide.median(svi.get_params(state)), losses

    return run


def _levels(model, t_schedule, num_steps, args, kwargs) -> Array:
    # substitute start values so that no site runs reverse diffusion just to be traced
    with (
        handlers.block(),
        handlers.trace() as tr,
        handlers.substitute(substitute_fn=init_to_diffusion_noise()),
        handlers.seed(rng_seed=0),
        noise_level(0),
    ):
        model(*args, **kwargs)
    check_observations(tr)
    sites = diffusion_sites(tr)
    if not sites:
        raise ValueError("plug_and_play needs a model with at least one diffusion_prior site.")
    schedule = shared_schedule([site.model for site in sites.values()])
    T = schedule.num_steps
    if isinstance(t_schedule, str):
        builders = {"graikos": graikos_schedule, "linear": linear_schedule}
        if t_schedule not in builders:
            raise ValueError(
                f"unknown t_schedule {t_schedule!r}; expected 'graikos', 'linear', an array "
                "of levels or a callable step -> t."
            )
        levels = builders[t_schedule](num_steps, T)
    elif callable(t_schedule):
        levels = np.asarray([int(t_schedule(i)) for i in range(num_steps)], np.int32)
    else:
        levels = np.asarray(t_schedule)
        if levels.shape != (num_steps,):
            raise ValueError(f"t_schedule has shape {levels.shape}; expected ({num_steps},).")
    schedule.check_level(levels)
    return jnp.asarray(levels, jnp.int32)
