"""Inpainting: a NumPyro model with masked observed pixels, and the replacement baseline.

:func:`inpainting_model` is the Bayesian formulation every sampler in the library
accepts (annealed MCMC, ``plug_and_play``); :func:`replacement_inpainting` is the
reverse-diffusion baseline that overwrites the known pixels with noised copies of
the observation at every level (Song et al. 2021; Lugmayr et al.'s RePaint without
resampling).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from jax import Array
from jax.typing import ArrayLike

from numpyro_diffusion import Diffusion, diffusion_prior
from numpyro_diffusion.progress import progress_scan

__all__ = ["inpainting_model", "replacement_inpainting", "check_inpainting_inputs"]


def check_inpainting_inputs(
    prior: Diffusion, observed: ArrayLike, mask: ArrayLike, batched: bool = True
) -> tuple[int, ...]:
    """Check shapes and return the batch shape of ``observed`` ``(*batch, *event_shape)``.

    ``mask`` has the prior's event shape or the shape of ``observed``.
    """
    event = tuple(prior.event_shape)
    obs_shape, mask_shape = tuple(jnp.shape(observed)), tuple(jnp.shape(mask))
    n = len(obs_shape) - len(event)
    if n < 0 or obs_shape[n:] != event or (n > 0 and not batched):
        expected = "(*batch, *event_shape)" if batched else "event_shape"
        raise ValueError(
            f"observed has shape {obs_shape}; expected {expected} with the prior's "
            f"event_shape {event}."
        )
    if mask_shape not in (event, obs_shape):
        raise ValueError(
            f"mask has shape {mask_shape}; give one mask of the event_shape {event} or one "
            f"per image, of observed's shape {obs_shape}."
        )
    return obs_shape[:n]


def inpainting_model(
    prior: Diffusion,
    observed: ArrayLike,
    mask: ArrayLike,
    noise_std: float | None = 0.05,
    cond: Any = None,
) -> Array:
    """``x ~ prior``; ``y = x + noise_std * N(0, I)`` observed where ``mask`` is true.

    ``noise_std=None`` makes the noise scale a latent site ``"noise_std" ~
    HalfNormal(1)``, shared by the batch (denoising with an unknown noise level when
    the mask is all true).

    ``observed`` has shape ``event_shape``, or ``(*batch, *event_shape)`` for
    independent images under a plate (useful for ``plug_and_play``; for annealed MCMC
    run one image at a time and let the chains be its posterior draws). ``mask`` has
    the event shape or ``observed``'s. Values of ``observed`` outside the mask are
    ignored (they may be NaN). Returns ``x`` of ``observed``'s shape.
    """
    batch_shape = check_inpainting_inputs(prior, observed, mask)
    mask = jnp.broadcast_to(jnp.asarray(mask, bool), jnp.shape(observed))
    # unobserved entries must be finite: a NaN times the zero gradient of the mask is NaN
    observed = jnp.where(mask, jnp.asarray(observed, jnp.float32), 0.0)
    if noise_std is None:
        noise_std = numpyro.sample("noise_std", dist.HalfNormal(1.0))
    with numpyro.plate_stack("images", list(batch_shape)):
        x = diffusion_prior("x", prior, cond=cond)
        likelihood = dist.Normal(x, noise_std).mask(mask).to_event(len(prior.event_shape))
        numpyro.sample("y", likelihood, obs=observed)
    return x


def replacement_inpainting(
    prior: Diffusion,
    rng_key: Array,
    observed: ArrayLike,
    mask: ArrayLike,
    num_samples: int,
    cond: Any = None,
    *,
    levels: Any = None,
    progress_bar: bool = False,
) -> Array:
    """Reverse diffusion that replaces the known pixels at every level.

    Before each ancestral step at level ``s`` the masked entries are set to
    ``sqrt(abar_s) y + sigma_s z``, a fresh forward-noised copy of the observation;
    the result keeps ``y`` on the mask. ``levels`` as in
    :meth:`VPSchedule.walk_levels`. One image (``observed`` and ``mask`` of the event
    shape; ``jax.vmap`` for many). Returns ``(num_samples, *event_shape)``.
    """
    check_inpainting_inputs(prior, observed, mask, batched=False)
    schedule = prior.schedule
    mask = jnp.asarray(mask, bool)
    observed = jnp.where(mask, jnp.asarray(observed, jnp.float32), 0.0)
    steps = jnp.asarray(schedule.walk_steps(levels))
    init_key, walk_key = jax.random.split(rng_key)
    x = jax.random.normal(init_key, (num_samples, *prior.event_shape))
    batched_eps = jax.vmap(prior.eps, in_axes=(0, None, None))

    def body(x, i_step):
        i, (s, t) = i_step
        known_key, step_key = jax.random.split(jax.random.fold_in(walk_key, i))
        known = schedule.noise(observed, jax.random.normal(known_key, x.shape), s)
        x = jnp.where(mask, known, x)
        noise = jax.random.normal(step_key, x.shape)
        return schedule.ddpm_step(x, batched_eps(x, s, cond), s, t, noise), None

    x, _ = progress_scan(
        body, x, steps, length=len(steps), label="replacement inpainting", enabled=progress_bar
    )
    return jnp.where(mask, observed, x)
