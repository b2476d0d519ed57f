"""Diffusion models as NumPyro primitives: prior sites, factors and the noise level.

``diffusion_prior`` is a sample site whose log-density at the current noise level
is ``-model.energy(x, t)``; ``diffusion_factor`` adds ``-weight * model.energy(x, t)``;
``noise_level(t)`` sets ``t`` for every diffusion site inside it.

Score-only models have no log-density value, only its gradient. Inside
:class:`gradient_only` their sites contribute a surrogate whose value is zero and
whose gradient is the score, which is all the unadjusted samplers need; outside it
a value request raises :class:`EnergyUnavailableError`.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax import Array
from jax.typing import ArrayLike
from numpyro.distributions import constraints
from numpyro.primitives import Messenger

from numpyro_diffusion.errors import EnergyUnavailableError
from numpyro_diffusion.interface import Diffusion

__all__ = [
    "DiffusionPrior",
    "DiffusionFactor",
    "diffusion_prior",
    "diffusion_factor",
    "noise_level",
    "current_noise_level",
    "gradient_only",
    "base_distribution",
    "diffusion_sites",
]


class noise_level(Messenger):
    """Effect handler that sets the noise level ``t`` of every diffusion site inside it.

    ``t`` is an integer and may be traced, so the handler works under ``jit`` and in
    ``lax.scan`` over levels. It follows NumPyro's handler protocol: it answers the
    ``"noise_level"`` message that :func:`current_noise_level` sends (the innermost
    handler wins; ``handlers.block`` hides it like any other effect).
    """

    def __init__(self, t: ArrayLike, fn: Any = None):
        if not isinstance(t, jax.core.Tracer):
            t_arr = np.asarray(t)
            if t_arr.ndim != 0 or not np.issubdtype(t_arr.dtype, np.integer):
                raise ValueError(f"noise_level takes one integer level, got {t!r}.")
            if int(t_arr) < 0:
                raise ValueError(f"noise level {int(t_arr)} is out of range: levels start at 0.")
        self.t = t
        super().__init__(fn)

    def process_message(self, msg: dict) -> None:
        if msg["type"] == "noise_level" and msg["value"] is None:
            msg["value"] = self.t


class gradient_only(Messenger):
    """Marks a computation that needs only gradients of the log-density.

    Inside it, score-only diffusion sites contribute ``sum(stop_gradient(s) * (x -
    stop_gradient(x)))``: zero in value, the score ``s`` in gradient. It answers the
    ``"gradient_only"`` message of NumPyro's handler protocol.
    """

    def process_message(self, msg: dict) -> None:
        if msg["type"] == "gradient_only" and msg["value"] is None:
            msg["value"] = True


def _ask(kind: str, default: Any) -> Any:
    """Send a ``kind`` message through NumPyro's handler stack; ``default`` if unanswered."""
    msg = {
        "type": kind,
        "name": None,
        "fn": lambda: default,
        "args": (),
        "kwargs": {},
        "value": None,
    }
    return numpyro.primitives.apply_stack(msg)["value"]


def current_noise_level() -> ArrayLike:
    """The level set by the innermost :class:`noise_level` handler, or 0 outside any."""
    return _ask("noise_level", 0)


def _log_density(model: Diffusion, x: Array, t: ArrayLike, cond: Any, weight: ArrayLike) -> Array:
    """``-weight * E(x, t)`` for one unbatched ``x``, or the score surrogate."""
    if model.has_energy:
        return -weight * model.energy(x, t, cond)
    if not _ask("gradient_only", False):
        raise EnergyUnavailableError(
            "This diffusion site's model (a log-density value was requested)"
        )
    score = jax.lax.stop_gradient(weight * model.score(x, t, cond))
    return jnp.sum(score * (x - jax.lax.stop_gradient(x)))


def _batched_log_density(model, value, t, cond, weight) -> Array:
    event_ndim = len(model.event_shape)
    if tuple(value.shape[value.ndim - event_ndim :]) != tuple(model.event_shape):
        raise ValueError(
            f"a diffusion site got a value of shape {value.shape}; its trailing dimensions "
            f"must be the model's event_shape {tuple(model.event_shape)}."
        )
    batch_shape = value.shape[: value.ndim - event_ndim]
    if not batch_shape:
        return _log_density(model, value, t, cond, weight)
    flat = value.reshape((-1, *model.event_shape))
    lp = jax.vmap(lambda x: _log_density(model, x, t, cond, weight))(flat)
    return lp.reshape(batch_shape)


class DiffusionPrior(dist.Distribution):
    """The density ``p_t`` of a diffusion model at a fixed level, as a NumPyro distribution.

    ``log_prob(x) = -model.energy(x, t)``; ``sample`` draws from the same ``p_t``
    by the model's reverse diffusion (exact draws for
    :class:`GaussianMixtureDiffusion`). The model, ``cond`` and ``t`` are pytree
    data, so the distribution can be built under ``vmap`` and ``jit``.
    """

    arg_constraints: dict = {}
    pytree_data_fields = ("model", "cond", "t")

    def __init__(self, model: Diffusion, cond: Any = None, t: ArrayLike = 0, *, validate_args=None):
        if not isinstance(model, Diffusion):
            raise TypeError(
                f"diffusion sites take a diffusion model (the Diffusion interface), got "
                f"{type(model).__name__}."
            )
        model.check_level(t)
        model.check_cond(cond)
        self.model, self.cond, self.t = model, cond, t
        super().__init__(
            batch_shape=(), event_shape=tuple(model.event_shape), validate_args=validate_args
        )

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self):
        return constraints.independent(constraints.real, len(self.event_shape))

    def sample(self, key: Array, sample_shape: tuple[int, ...] = ()) -> Array:
        shape = tuple(sample_shape) + tuple(self.batch_shape)
        n = math.prod(shape)
        x = self.model.sample(key, n, self.cond, t=self.t)
        return x.reshape(shape + tuple(self.event_shape))

    def log_prob(self, value: Array) -> Array:
        return _batched_log_density(self.model, value, self.t, self.cond, 1.0)


class DiffusionFactor(dist.Distribution):
    """The factor ``-weight * model.energy(x, t)`` as an observed pseudo-distribution."""

    arg_constraints: dict = {}
    support = constraints.real
    pytree_data_fields = ("model", "cond", "t", "weight")

    def __init__(self, model: Diffusion, cond: Any = None, t: ArrayLike = 0, weight=1.0):
        if not isinstance(model, Diffusion):
            raise TypeError(
                f"diffusion_factor takes a diffusion model, got {type(model).__name__}."
            )
        model.check_level(t)
        model.check_cond(cond)
        self.model, self.cond, self.t, self.weight = model, cond, t, weight
        super().__init__(batch_shape=(), event_shape=tuple(model.event_shape))

    def sample(self, key: Array, sample_shape: tuple[int, ...] = ()) -> Array:
        raise NotImplementedError("a diffusion factor is observed; it has nothing to sample.")

    def log_prob(self, value: Array) -> Array:
        return _batched_log_density(self.model, value, self.t, self.cond, self.weight)


def diffusion_prior(name: str, model: Diffusion, cond: Any = None) -> Array:
    """A latent sample site distributed as ``p_t`` of ``model`` at the current noise level.

    Inside ``numpyro.plate`` it gives independent draws; outside inference it samples
    by reverse diffusion, so ``numpyro.infer.Predictive`` gives prior draws.
    """
    return numpyro.sample(name, DiffusionPrior(model, cond, current_noise_level()))


def diffusion_factor(
    name: str, model: Diffusion, x: Array, cond: Any = None, weight: ArrayLike = 1.0
) -> Array:
    """Add the factor ``-weight * model.energy(x, t)`` at the current noise level.

    A negative ``weight`` is allowed (negation); NumPyro's ``handlers.scale``
    refuses those, so this is a signed factor. Returns ``x``.
    """
    return numpyro.sample(name, DiffusionFactor(model, cond, current_noise_level(), weight), obs=x)


def base_distribution(fn: Any) -> Any:
    """``fn`` with NumPyro's wrappers (expand, mask, independent) peeled off."""
    while hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return fn


def diffusion_sites(trace: dict) -> dict[str, DiffusionPrior | DiffusionFactor]:
    """The diffusion sites of a NumPyro trace: site name -> its unwrapped
    :class:`DiffusionPrior` or :class:`DiffusionFactor`, in the trace's order."""
    sites = {}
    for name, site in trace.items():
        if site["type"] != "sample":
            continue
        base = base_distribution(site["fn"])
        if isinstance(base, (DiffusionPrior, DiffusionFactor)):
            sites[name] = base
    return sites
