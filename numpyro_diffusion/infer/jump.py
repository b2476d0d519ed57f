"""Jumps between a model's symmetric modes: a user's involution, accepted by Metropolis.

Gradient kernels cross a low-density valley only slowly, and some models have modes
that a known map of the latents carries into each other: a mixture's components
relabelled, a segmentation's classes swapped in the label map and the appearance
together. A jump proposes that map's image of the current point, ``z' = f(z)``, and
accepts it with probability ``min(1, exp(U(z, t) - U(z', t)))``. For that to leave the
level's density invariant ``f`` must be an involution (``f(f(z)) = z``) that preserves
volume (a permutation, a sign flip, a translation of some coordinates by others'
difference); it may draw its own randomness (which pair of classes to swap) from its
key, since each draw is an involution by itself.

Score-only diffusion terms have no energy to compare: their change is the line integral
of their score along the straight path from ``z`` to ``z'`` (Gauss-Lobatto, like the
``line_integral`` energy of MALA and HMC), the other terms' change exact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array
from jax.flatten_util import ravel_pytree

from numpyro_diffusion.infer.kernels import line_integral

__all__ = ["build_jump", "check_jump_signal", "energy_change"]

Jump = Callable[[Array, dict], dict]


def check_jump_signal(signal: Any) -> tuple[float, float]:
    """``(low, high)`` with ``0 <= low <= high <= 1``, or ``ValueError``."""
    try:
        low, high = (float(s) for s in signal)
    except (TypeError, ValueError):
        raise ValueError(
            f"jump_signal must be a pair (low, high) of alpha_bar values, got {signal!r}."
        ) from None
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"jump_signal must satisfy 0 <= low <= high <= 1, got {signal!r}.")
    return low, high


def energy_change(potential: Any, z: Array, z_new: Array, t: Array, num_points: int) -> Array:
    """``U(z_new, t) - U(z, t)`` of ``potential`` (a
    :class:`~numpyro_diffusion.infer.move.LevelPotential`): exact with energies; else
    the other terms' change exact and the diffusion terms' the line integral of their
    score from ``z`` to ``z_new`` on ``num_points`` points."""
    if potential.has_energy:
        return potential.potential_fn(z_new, t) - potential.potential_fn(z, t)

    def grad_log_p(x):
        return -potential.diffusion_grad_fn(x, t)

    diffusion_change = line_integral(
        grad_log_p, z, z_new, grad_log_p(z), grad_log_p(z_new), num_points
    )
    other_change = potential.other_potential_fn(z_new, t) - potential.other_potential_fn(z, t)
    return other_change - diffusion_change


def build_jump(potential: Any, jump: Jump, num_points: int) -> Callable:
    """``step(rng_key, z, t) -> (z, accepted)`` for one chain's flat latent ``z``
    ``(D,)`` at level ``t``: propose ``jump(key, values)`` on the unconstrained site
    values of ``z`` and accept it by Metropolis-Hastings on ``U(., t)`` of
    ``potential`` (a :class:`~numpyro_diffusion.infer.move.LevelPotential`).
    ``accepted`` is 1.0 or 0.0; a proposal whose energy change is not finite is
    rejected."""

    def proposal(rng_key: Array, z: Array) -> Array:
        values = potential.unravel_fn(z)
        proposed = jump(rng_key, values)
        if jax.tree.structure(proposed) != jax.tree.structure(values) or any(
            jnp.shape(a) != jnp.shape(b)
            for a, b in zip(jax.tree.leaves(proposed), jax.tree.leaves(values), strict=True)
        ):
            raise ValueError(
                "a jump must return the site values it was given, the same sites with the "
                f"same shapes: got {jax.tree.map(jnp.shape, proposed)} for "
                f"{jax.tree.map(jnp.shape, values)}."
            )
        return ravel_pytree(proposed)[0].astype(z.dtype)

    def step(rng_key: Array, z: Array, t: Array) -> tuple[Array, Array]:
        k_propose, k_accept = jax.random.split(rng_key)
        z_new = proposal(k_propose, z)
        delta = energy_change(potential, z, z_new, t, num_points)
        accept = jnp.isfinite(delta) & (jnp.log(jax.random.uniform(k_accept)) < -delta)
        return jnp.where(accept, z_new, z), accept.astype(jnp.float32)

    return step
