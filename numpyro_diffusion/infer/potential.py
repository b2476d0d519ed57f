"""A NumPyro model as an annealed potential ``U(z, t)`` over its flat unconstrained latent."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax import Array
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.distributions import constraints
from numpyro.infer.initialization import init_to_uniform
from numpyro.infer.util import find_valid_initial_params, initialize_model, potential_energy
from numpyro.primitives import Messenger

from numpyro_diffusion.errors import EnergyUnavailableError
from numpyro_diffusion.infer.move import LevelPotential
from numpyro_diffusion.interface import Diffusion, shared_schedule
from numpyro_diffusion.primitives import (
    DiffusionPrior,
    base_distribution,
    diffusion_prior,
    diffusion_sites,
    gradient_only,
    noise_level,
)
from numpyro_diffusion.schedules import VPSchedule

__all__ = [
    "AnnealedPotential",
    "PotentialFamily",
    "annealed_potential",
    "as_numpyro_model",
    "check_observations",
]


def init_to_diffusion_noise(
    site: dict | None = None, fallback: Callable = init_to_uniform, values: dict | None = None
):
    """Initialise sites named in ``values`` to those (constrained) values, diffusion
    prior sites from ``N(0, I)`` (the top noise level), and every other latent site
    with ``fallback`` (NumPyro's ``init_to_uniform`` by default)."""
    if site is None:
        return partial(init_to_diffusion_noise, fallback=fallback, values=values)
    if site["type"] == "sample" and not site["is_observed"]:
        if values and site["name"] in values:
            return values[site["name"]]
        if isinstance(base_distribution(site["fn"]), DiffusionPrior):
            rng_key = site["kwargs"].get("rng_key")
            sample_shape = site["kwargs"].get("sample_shape") or ()
            return jax.random.normal(rng_key, tuple(sample_shape) + tuple(site["fn"].shape()))
    return fallback(site)


def _single_prior(diffusion: Diffusion) -> None:
    diffusion_prior("x", diffusion)


def as_numpyro_model(model: Any) -> tuple[Callable, tuple]:
    """A NumPyro model function and the leading arguments it takes.

    A bare diffusion model becomes one prior site ``"x"`` of a fixed function whose
    argument is the model, so the model is data of a compiled program, not a
    constant baked into it.
    """
    if isinstance(model, Diffusion):
        return _single_prior, (model,)
    if not callable(model):
        raise TypeError(
            f"expected a NumPyro model function or a diffusion model, got {type(model).__name__}."
        )
    return model, ()


def check_observations(trace: dict) -> None:
    """Raise ``ValueError`` naming an observed site whose concrete data hold NaN or inf."""
    for name, site in trace.items():
        if (
            site["type"] != "sample"
            or not site["is_observed"]
            or name in diffusion_sites({name: site})
        ):
            continue
        value = site["value"]
        if isinstance(value, jax.core.Tracer):
            continue
        value = np.asarray(value)
        if np.issubdtype(value.dtype, np.inexact) and not np.all(np.isfinite(value)):
            bad = int(np.sum(~np.isfinite(value)))
            raise ValueError(
                f"observed site {name!r} has {bad} NaN or infinite value(s) of {value.size}: "
                "the likelihood would be NaN everywhere. Drop them, or replace them by any "
                "finite number and mask them out (dist.Normal(...).mask(observed_mask))."
            )


def _leveled(model: Callable) -> Callable:
    def leveled_model(t, *args, **kwargs):
        with noise_level(t):
            return model(*args, **kwargs)

    return leveled_model


class AnnealedPotential(NamedTuple):
    """The potential of a model at every noise level, over one flat latent vector.

    Attributes
    ----------
    potential_fn
        ``(z, t) -> U`` with ``z`` of shape ``(D,)``; ``U = -log p_t(z)`` up to a
        constant. Raises :class:`EnergyUnavailableError` for score-only models.
    grad_fn
        ``(z, t) -> grad_z U``, shape ``(D,)``; works for score-only models too.
    init_position
        ``(D,)``, or ``(num_chains, D)``: diffusion sites from ``N(0, I)``.
    unravel_fn
        Flat ``(D,)`` vector to the dict of unconstrained site values.
    constrain_fn
        Flat ``(D,)`` vector to the dict of constrained site values (and
        deterministic sites).
    diffusion_mask
        ``(D,)`` booleans: entries that belong to ``diffusion_prior`` sites.
    schedule
        The schedule shared by every diffusion site (``None`` if there are none).
    has_energy
        Whether ``potential_fn`` has a value (every diffusion site has an energy).
    """

    potential_fn: Callable[[Array, Array], Array]
    grad_fn: Callable[[Array, Array], Array]
    init_position: Array
    unravel_fn: Callable[[Array], dict]
    constrain_fn: Callable[[Array], dict]
    diffusion_mask: Array
    schedule: VPSchedule | None
    has_energy: bool


class PotentialFamily(NamedTuple):
    """The potential as a function of the model's arguments (for compiled reuse).

    ``potential_fn(z, t, args, kwargs)``, ``grad_fn(z, t, args, kwargs)`` and
    ``constrain_fn(z, t, args, kwargs)`` take the model arguments explicitly.
    ``diffusion_grad_fn`` is the gradient of the diffusion terms alone (priors and
    factors), the part of ``U`` that changes with ``t``.
    """

    potential_fn: Callable
    grad_fn: Callable
    diffusion_grad_fn: Callable
    init_fn: Callable  # (keys (C, 2), args, kwargs) -> initial positions (C, D)
    constrain_fn: Callable
    unravel_fn: Callable
    diffusion_mask: Array
    schedule: VPSchedule | None
    has_energy: bool
    site_names: tuple[str, ...]
    other_grad_fn: Callable  # the gradient of every term but the diffusion sites
    other_sites: tuple[str, ...]  # sites whose terms are not diffusion terms
    other_potential_fn: Callable  # the value of every term but the diffusion sites

    def at(self, args: tuple, kwargs: dict) -> LevelPotential:
        """The potential of the model with these arguments, as the move takes it."""
        return LevelPotential(
            lambda z, t: self.potential_fn(z, t, args, kwargs),
            lambda z, t: self.grad_fn(z, t, args, kwargs),
            lambda z, t: self.diffusion_grad_fn(z, t, args, kwargs),
            lambda z, t: self.other_grad_fn(z, t, args, kwargs),
            self.diffusion_mask,
            self.schedule,
            self.has_energy,
            lambda z, t: self.other_potential_fn(z, t, args, kwargs),
            self.unravel_fn,
        )


def initialize_potential(
    rng_key: Array,
    model_fn: Callable,
    model_args: tuple,
    model_kwargs: dict,
    *,
    check_gradient: bool = True,
    init_strategy: Callable | None = None,
) -> tuple[PotentialFamily, Array]:
    """Trace the NumPyro function ``model_fn`` once (see :func:`as_numpyro_model`) and
    return its potential family and initial flat positions.

    ``rng_key`` of shape ``(2,)`` gives one position ``(D,)``; a batch of keys
    ``(C, 2)`` gives ``(C, D)``. ``check_gradient=False`` accepts a start point whose
    potential is finite without evaluating its gradient: for a caller that only needs
    the family (whose ``init_fn`` checks the potential alone: the walk's first kernel
    step takes the gradient and counts a non-finite one as a divergence).
    ``init_strategy``: how sites other than diffusion priors start (a NumPyro
    initialisation strategy; ``init_to_uniform`` by default); diffusion priors start
    from ``N(0, I)``.
    """
    start = init_to_diffusion_noise(fallback=init_strategy or init_to_uniform)
    leveled = _leveled(model_fn)
    # one plain trace first, so that bad data and bad sites are named here rather than
    # ending in NumPyro's generic "Cannot find valid initial parameters"
    level0 = jnp.asarray(0, jnp.int32)
    with (
        handlers.trace() as trace,
        handlers.substitute(substitute_fn=start),
        handlers.seed(rng_seed=0),
    ):
        leveled(level0, *model_args, **model_kwargs)
    check_observations(trace)
    batched = jnp.ndim(rng_key) == 2
    with gradient_only():
        info = initialize_model(
            rng_key[0] if batched else rng_key,
            leveled,
            init_strategy=start,
            dynamic_args=True,
            model_args=(jnp.asarray(0, jnp.int32), *model_args),
            model_kwargs=model_kwargs,
            validate_grad=check_gradient,
        )
    trace = info.model_trace
    latent = [
        name
        for name, site in trace.items()
        if site["type"] == "sample"
        and not site["is_observed"]
        and not site["fn"].support.is_discrete
    ]
    if not latent:
        raise ValueError("the model has no continuous latent sites to sample.")
    diffusion_models = [site.model for site in diffusion_sites(trace).values()]
    schedule = shared_schedule(diffusion_models)
    has_energy = all(m.has_energy for m in diffusion_models)
    prototype = info.param_info.z
    mask_tree = {
        name: jnp.full(
            jnp.shape(prototype[name]),
            isinstance(base_distribution(trace[name]["fn"]), DiffusionPrior),
        )
        for name in prototype
    }
    flat_proto, unravel = ravel_pytree(prototype)
    mask, _ = ravel_pytree(mask_tree)
    mask = mask.astype(bool)
    potential_gen, postprocess_gen = info.potential_fn, info.postprocess_fn

    def potential_fn(z, t, args=model_args, kwargs=model_kwargs):
        return potential_gen(t, *args, **kwargs)(unravel(z))

    def grad_fn(z, t, args=model_args, kwargs=model_kwargs):
        with gradient_only():
            return jax.grad(potential_fn)(z, t, args, kwargs)

    def constrain_fn(z, t, args=model_args, kwargs=model_kwargs):
        return postprocess_gen(t, *args, **kwargs)(unravel(z))

    def diffusion_log_density(z, t, args, kwargs):
        values = constrain_fn(z, t, args, kwargs)
        model_trace = handlers.trace(
            handlers.seed(handlers.substitute(leveled, data=values), 0)
        ).get_trace(t, *args, **kwargs)
        # a site under ``numpyro.handlers.scale`` (a tempered prior) keeps its scale,
        # as in ``potential_fn``
        return sum(
            (model_trace[name]["scale"] if model_trace[name]["scale"] is not None else 1.0)
            * jnp.sum(model_trace[name]["fn"].log_prob(model_trace[name]["value"]))
            for name in diffusion_sites(model_trace)
        )

    def diffusion_grad_fn(z, t, args=model_args, kwargs=model_kwargs):
        with gradient_only():
            return -jax.grad(diffusion_log_density)(z, t, args, kwargs)

    def other_potential(z, t, args=model_args, kwargs=model_kwargs):
        return potential_energy(without_diffusion(leveled), (t, *args), kwargs, unravel(z))

    def other_grad_fn(z, t, args=model_args, kwargs=model_kwargs):
        return jax.grad(other_potential)(z, t, args, kwargs)

    diffusion_names = set(diffusion_sites(trace))
    other_sites = tuple(
        name
        for name, site in trace.items()
        if site["type"] == "sample" and name not in diffusion_names
    )

    def start_points(keys, args, kwargs, validate_grad):
        def one_chain(key):
            with gradient_only():
                (params, _, _), _ = find_valid_initial_params(
                    key,
                    leveled,
                    init_strategy=start,
                    model_args=(jnp.asarray(0, jnp.int32), *args),
                    model_kwargs=kwargs,
                    prototype_params=prototype,
                    validate_grad=validate_grad,
                )
            return ravel_pytree(params)[0]

        # vmapped, not NumPyro's batch of keys: that is a lax.map, one chain after
        # another, which on a GPU costs more than the whole walk at 16,384 chains
        return jax.vmap(one_chain)(keys)

    def init_fn(keys, args=model_args, kwargs=model_kwargs):
        return start_points(keys, args, kwargs, validate_grad=False)

    family = PotentialFamily(
        potential_fn,
        grad_fn,
        diffusion_grad_fn,
        init_fn,
        constrain_fn,
        unravel,
        mask,
        schedule,
        has_energy,
        tuple(latent),
        other_grad_fn,
        other_sites,
        other_potential,
    )
    init = (
        start_points(rng_key, model_args, model_kwargs, check_gradient) if batched else flat_proto
    )
    return family, init


class without_diffusion(Messenger):
    """Gives diffusion sites a zero log-density (their network is never evaluated)."""

    def process_message(self, msg):
        if msg["type"] == "sample" and diffusion_sites({msg["name"]: msg}):
            fn = msg["fn"]
            msg["fn"] = dist.ImproperUniform(
                constraints.real, tuple(fn.batch_shape), tuple(fn.event_shape)
            )


def annealed_potential(
    model: Any, *model_args: Any, rng_key: Array | None = None, **model_kwargs: Any
) -> AnnealedPotential:
    """NumPyro's potential of ``model`` as a function ``U(z, t)`` of the flat latent and level.

    Built on ``numpyro.infer.util.initialize_model``: every site of the model
    contributes (diffusion priors and factors at level ``t``, other priors, plates,
    observations, ``numpyro.factor`` constraints). ``rng_key`` seeds the initial
    point (``PRNGKey(0)`` by default).
    """
    key = jax.random.PRNGKey(0) if rng_key is None else rng_key
    model_fn, lead = as_numpyro_model(model)
    model_args = (*lead, *model_args)
    family, init = initialize_potential(key, model_fn, model_args, model_kwargs)

    def potential_fn(z, t):
        if not family.has_energy:
            raise EnergyUnavailableError(
                "This potential (one of its diffusion sites is score-only, so only "
                "grad_fn is available)"
            )
        return family.potential_fn(z, t)

    return AnnealedPotential(
        potential_fn=potential_fn,
        grad_fn=lambda z, t: family.grad_fn(z, t),
        init_position=init,
        unravel_fn=family.unravel_fn,
        constrain_fn=lambda z, t=0: family.constrain_fn(z, t),
        diffusion_mask=family.diffusion_mask,
        schedule=family.schedule,
        has_energy=family.has_energy,
    )
