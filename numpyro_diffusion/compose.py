"""Composition of diffusion models: product, mixture, negation and guidance.

Each operator returns an object with the model interface. Energies combine as in
Du et al.; the noise predictions combine the same way because ``eps = sigma_t grad E``
is linear in ``E``, so product, negation and guidance work on score-only models too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.scipy.special import logsumexp
from jax.typing import ArrayLike

from numpyro_diffusion.errors import EnergyUnavailableError
from numpyro_diffusion.interface import Diffusion, check_compatible

__all__ = ["product", "mixture", "negation", "guided", "classifier_guided"]


class _Composite(Diffusion):
    """Shared plumbing: one schedule and event shape, energy only if all parts have one."""

    def __init__(self, models: Sequence[Diffusion], what: str):
        check_compatible(list(models), what)
        self.models = tuple(models)
        self.schedule = models[0].schedule
        self.event_shape = tuple(models[0].event_shape)
        self._what = what

    @property
    def has_energy(self) -> bool:
        return all(m.has_energy for m in self.models)

    def _require_energy(self) -> None:
        if not self.has_energy:
            raise EnergyUnavailableError(f"This {self._what} of a score-only model")


class Product(_Composite):
    """``p_t(x) ∝ prod_i p_i,t(x)``: energies and noise predictions add."""

    def __init__(self, models: Sequence[Diffusion]):
        super().__init__(models, "product")

    def eps(self, x: Array, t: ArrayLike, cond: Any = None) -> Array:
        return sum(m.eps(x, t) for m in self.models)

    def energy(self, x: Array, t: ArrayLike, cond: Any = None) -> Array:
        self._require_energy()
        return sum(m.energy(x, t) for m in self.models)


class Mixture(_Composite):
    """``p_t(x) ∝ sum_i w_i exp(-E_i(x, t))``; needs energies."""

    def __init__(self, models: Sequence[Diffusion], weights: ArrayLike | None):
        super().__init__(models, "mixture")
        if not self.has_energy:
            raise EnergyUnavailableError("A mixture of score-only models")
        w = np.ones(len(models)) if weights is None else np.asarray(weights, np.float64)
        if w.shape != (len(models),) or np.any(w <= 0):
            raise ValueError(
                f"mixture weights must be {len(models)} positive numbers, got {weights}."
            )
        self.log_weights = jnp.asarray(np.log(w / w.sum()), jnp.float32)

    def energy(self, x: Array, t: ArrayLike, cond: Any = None) -> Array:
        energies = jnp.stack([m.energy(x, t) for m in self.models])
        return -logsumexp(-energies + self.log_weights)

    def eps(self, x: Array, t: ArrayLike, cond: Any = None) -> Array:
        return self.schedule.sigmas[t] * jax.grad(self.energy)(x, t)


class Linear(_Composite):
    """``E = sum_i c_i E_i`` with signed coefficients (negation, guidance)."""

    def __init__(
        self,
        terms: Sequence[tuple[float, Diffusion, Any]],
        what: str,
    ):
        super().__init__([m for _, m, _ in terms], what)
        self.terms = tuple(terms)

    def eps(self, x: Array, t: ArrayLike, cond: Any = None) -> Array:
        return sum(c * m.eps(x, t, k) for c, m, k in self.terms)

    def energy(self, x: Array, t: ArrayLike, cond: Any = None) -> Array:
        self._require_energy()
        return sum(c * m.energy(x, t, k) for c, m, k in self.terms)


class ClassifierGuided(_Composite):
    """``E = E_model - scale * log p_t(y | x)`` for a noise-aware classifier."""

    def __init__(
        self, model: Diffusion, log_likelihood_fn: Callable[[Array, Array], Array], scale: float
    ):
        super().__init__([model], "classifier guidance")
        self.model = model
        self.log_likelihood_fn = log_likelihood_fn
        self.scale = scale

    def eps(self, x: Array, t: ArrayLike, cond: Any = None) -> Array:
        grad_ll = jax.grad(self.log_likelihood_fn)(x, t)
        return self.model.eps(x, t) - self.schedule.sigmas[t] * self.scale * grad_ll

    def energy(self, x: Array, t: ArrayLike, cond: Any = None) -> Array:
        self._require_energy()
        return self.model.energy(x, t) - self.scale * self.log_likelihood_fn(x, t)


def product(*models: Diffusion) -> Diffusion:
    """The product of experts ``prod_i p_i`` (energies add)."""
    return Product(models)


def mixture(models: Sequence[Diffusion], weights: ArrayLike | None = None) -> Diffusion:
    """The mixture ``sum_i w_i p_i``: energy ``-logsumexp(-E_i + log w_i)``; needs energies."""
    return Mixture(models, weights)


def negation(model: Diffusion, other: Diffusion, alpha: float) -> Diffusion:
    """``p^(1 + alpha) / q^alpha``: energy ``(1 + alpha) E_p - alpha E_q``."""
    return Linear([(1.0 + alpha, model, None), (-alpha, other, None)], "negation")


def guided(model: Diffusion, cond: Any, scale: float) -> Diffusion:
    """Classifier-free guidance: ``p(x | c)^(1 + w) p(x)^(-w)``.

    Energy ``(1 + w) E(x, c) - w E(x)`` and noise ``(1 + w) eps(x, c) - w eps(x)``,
    where ``E(x)`` is the unconditional (null-class) model. The composite's own
    ``cond`` argument is ignored: the condition is fixed here.
    """
    return Linear([(1.0 + scale, model, cond), (-scale, model, None)], "guidance")


def classifier_guided(
    model: Diffusion, log_likelihood_fn: Callable[[Array, Array], Array], scale: float
) -> Diffusion:
    """Classifier guidance with a noise-aware ``log_likelihood_fn(x, t) = log p_t(y | x)``."""
    return ClassifierGuided(model, log_likelihood_fn, scale)
