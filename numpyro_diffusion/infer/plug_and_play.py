"""Plug-and-play point estimates (Graikos et al., 2022) with NumPyro's SVI and a delta guide.

Every ``diffusion_prior`` (and ``diffusion_factor``) site contributes the denoising
loss ``weight * ||eps - eps_theta(sqrt(abar_t) x + sigma_t eps, t)||^2`` for a fresh
``eps`` at the step's level ``t``; every other site (observations, ``numpyro.factor``
constraints, ordinary priors) contributes its usual log-density, optionally scaled by
a decaying ``constraint_weight``. The sum is minimised over a point estimate of the
latent sites (``AutoDelta``). The loss needs only ``eps``, so score-only models work.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoDelta
from numpyro.primitives import Messenger

from numpyro_diffusion.infer.potential import _base_distribution, as_numpyro_model
from numpyro_diffusion.primitives import DiffusionFactor, DiffusionPrior, noise_level

__all__ = ["plug_and_play", "PlugAndPlayResult", "graikos_schedule", "linear_schedule"]


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
        base = _base_distribution(msg["fn"])
        if isinstance(base, (DiffusionPrior, DiffusionFactor)):
            key = jax.random.fold_in(self.rng_key, self.count)
            self.count += 1
            weight = base.weight if isinstance(base, DiffusionFactor) else 1.0
            msg["fn"] = _DenoisingLoss(base, key, weight).expand(msg["fn"].batch_shape)
        else:
            scale = msg.get("scale")
            msg["scale"] = self.constraint_weight * (1.0 if scale is None else scale)


class _DenoisingLoss(DiffusionPrior):
    """``log_prob(x) = -weight * ||eps - eps_theta(sqrt(abar_t) x + sigma_t eps, t)||^2``."""

    pytree_aux_fields = ("model", "cond", "t", "key", "weight")

    def __init__(self, site: Any, key: Array, weight: Any):
        super().__init__(site.model, site.cond, site.t)
        self.key, self.weight = key, weight

    def log_prob(self, value):
        model, t = self.model, self.t
        event_ndim = len(model.event_shape)
        batch_shape = value.shape[: value.ndim - event_ndim]
        flat = value.reshape((-1, *model.event_shape))
        eps = jax.random.normal(self.key, flat.shape)
        abar = model.schedule.alpha_bars[t]
        x_t = jnp.sqrt(abar) * flat + jnp.sqrt(1.0 - abar) * eps
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
    **model_kwargs: Any,
) -> PlugAndPlayResult:
    """Graikos et al.'s plug-and-play point estimate for a NumPyro model.

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
        Optional starting values by site name (constrained); otherwise diffusion sites
        start from ``N(0, I)`` and other sites as NumPyro's ``init_to_uniform``.

    Returns
    -------
    :class:`PlugAndPlayResult` with ``params`` (constrained values by site name),
    ``losses`` ``(num_steps,)`` and the ``levels`` used.
    """
    from numpyro.infer.initialization import init_to_value

    from numpyro_diffusion.infer.potential import init_to_diffusion_noise

    if num_steps < 1:
        raise ValueError(f"num_steps must be positive, got {num_steps}.")
    numpyro_model = as_numpyro_model(model)
    if optimizer is None:
        optimizer = optax.adam(optax.cosine_decay_schedule(0.1, num_steps, alpha=0.01))

    def wrapped(t, key, weight, *args, **kwargs):
        with noise_level(t), _denoising(key, weight):
            return numpyro_model(*args, **kwargs)

    init_strategy = init_to_value(values=init_values) if init_values else init_to_diffusion_noise()
    guide = AutoDelta(wrapped, init_loc_fn=init_strategy)
    svi = SVI(wrapped, guide, optimizer, loss=Trace_ELBO())

    schedule_levels = _levels(
        model=numpyro_model,
        t_schedule=t_schedule,
        num_steps=num_steps,
        args=model_args,
        kwargs=model_kwargs,
    )
    weights = jnp.asarray(
        [constraint_weight(i) for i in range(num_steps)]
        if callable(constraint_weight)
        else np.full(num_steps, constraint_weight),
        jnp.float32,
    )
    init_key, loop_key = jax.random.split(rng_key)
    state = svi.init(
        init_key, schedule_levels[0], loop_key, weights[0], *model_args, **model_kwargs
    )

    @jax.jit
    def run(state):
        def body(state, i):
            state, loss = svi.update(
                state,
                schedule_levels[i],
                jax.random.fold_in(loop_key, i),
                weights[i],
                *model_args,
                **model_kwargs,
            )
            return state, loss

        return jax.lax.scan(body, state, jnp.arange(num_steps))

    state, losses = run(state)
    params = guide.median(svi.get_params(state))
    return PlugAndPlayResult(params, losses, schedule_levels)


def _levels(model, t_schedule, num_steps, args, kwargs) -> Array:
    from numpyro import handlers

    from numpyro_diffusion.infer.potential import init_to_diffusion_noise

    # substitute start values so that no site runs reverse diffusion just to be traced
    with (
        handlers.block(),
        handlers.trace() as tr,
        handlers.substitute(substitute_fn=init_to_diffusion_noise()),
        handlers.seed(rng_seed=0),
        noise_level(0),
    ):
        model(*args, **kwargs)
    schedules = [
        _base_distribution(site["fn"]).model.schedule
        for site in tr.values()
        if site["type"] == "sample"
        and isinstance(_base_distribution(site["fn"]), (DiffusionPrior, DiffusionFactor))
    ]
    if not schedules:
        raise ValueError("plug_and_play needs a model with at least one diffusion_prior site.")
    T = schedules[0].num_steps
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
        levels = np.asarray(t_schedule, np.int32)
        if levels.shape != (num_steps,):
            raise ValueError(f"t_schedule has shape {levels.shape}; expected ({num_steps},).")
    schedules[0].check_level(levels)
    return jnp.asarray(levels)
