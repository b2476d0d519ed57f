"""Conversions between a network's prediction target and the noise ``eps``.

With ``x_t = sqrt(abar) x_0 + sigma eps`` (``sigma = sqrt(1 - abar)``):

- ``"eps"``: the network predicts ``eps``;
- ``"x0"``: it predicts ``x_0``, so ``eps = (x_t - sqrt(abar) x_0) / sigma``;
- ``"v"``: it predicts ``v = sqrt(abar) eps - sigma x_0``, so ``eps = sqrt(abar) v + sigma x_t``;
- ``"score"``: it predicts ``grad log p_t``, so ``eps = -sigma * score``;
- ``"energy"``: it returns a scalar raw energy whose gradient is ``eps`` (Du et al.).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

__all__ = ["PARAMETERIZATIONS", "eps_from_prediction", "prediction_from_eps"]

PARAMETERIZATIONS = ("eps", "x0", "v", "score", "energy")
_ARRAY_TARGETS = ("eps", "x0", "v", "score")


def check_parameterization(parameterization: str) -> None:
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(
            f"unknown parameterization {parameterization!r}; expected one of "
            f"{', '.join(PARAMETERIZATIONS)}."
        )


def eps_from_prediction(
    prediction: Array, x: Array, alpha_bar: ArrayLike, parameterization: str
) -> Array:
    """The noise ``eps`` implied by a network ``prediction`` at ``x`` (same shapes)."""
    a, s = jnp.sqrt(alpha_bar), jnp.sqrt(1.0 - alpha_bar)
    if parameterization == "eps":
        return prediction
    if parameterization == "x0":
        return (x - a * prediction) / s
    if parameterization == "v":
        return a * prediction + s * x
    if parameterization == "score":
        return -s * prediction
    raise ValueError(
        f"parameterization {parameterization!r} has no array prediction; expected one of "
        f"{', '.join(_ARRAY_TARGETS)}."
    )


def prediction_from_eps(eps: Array, x: Array, alpha_bar: ArrayLike, parameterization: str) -> Array:
    """The inverse of :func:`eps_from_prediction`: the target a network should predict."""
    a, s = jnp.sqrt(alpha_bar), jnp.sqrt(1.0 - alpha_bar)
    if parameterization == "eps":
        return eps
    if parameterization == "x0":
        return (x - s * eps) / a
    if parameterization == "v":
        return (eps - s * x) / a
    if parameterization == "score":
        return -eps / s
    raise ValueError(
        f"parameterization {parameterization!r} has no array prediction; expected one of "
        f"{', '.join(_ARRAY_TARGETS)}."
    )
