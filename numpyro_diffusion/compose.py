"""Composition of diffusion models: product, mixture, negation and guidance.

Each operator returns a model (a pytree, like its parts). Energies combine as in
Du et al.; the noise predictions combine the same way because ``eps = sigma_t grad E``
is linear in ``E``, so product, negation and guidance work on score-only models too.
A ``cond`` given to a composite's methods is passed to every part, except where a
part's condition is fixed by the operator (classifier-free guidance).
"""

from __future__ import annotations

import warnings
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

    data_fields = ("models",)
    static_fields = ("schedule", "event_shape", "what")

    def __init__(self, models: Sequence[Diffusion], what: str):
        check_compatible(list(models), what)
        self.models = tuple(models)
        self.schedule = models[0].schedule
        self.event_shape = tuple(models[0].event_shape)
        self.what = what

    @property
    def has_energy(self) -> bool:
        return all(m.has_energy for m in self.models)

    def check_cond(self, cond: Any) -> Any:
        for m in self.models:
            m.check_cond(cond)
        return cond

    def _require_energy(self) -> None:
        if not self.has_energy:
            raise EnergyUnavailableError(f"This {self.what} of a score-only model")


class Product(_Composite):
    """``p_t(x) ∝ prod_i p_i,t(x)``: energies and noise predictions add."""

    def __init__(self, models: Sequence[Diffusion]):
        super().__init__(models, "product")

    def eps(self, x: Array, t: ArrayLike, cond: Any = None) -> Array:
        return sum(m.eps(x, t, cond) for m in self.models)

    def energy(self, x: Array, t: ArrayLike, cond: Any = None) -> Array:
        self._require_energy()
        return sum(m.energy(x, t, cond) for m in self.models)


class Mixture(_Composite):
    """``p_t(x) ∝ sum_i w_i exp(-E_i(x, t))``; needs energies."""

    data_fields = ("models", "log_weights")

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

    @property
    def energy_normalized(self) -> bool:
        return all(m.energy_normalized for m in self.models)

    def energy(self, x: Array, t: ArrayLike, cond: Any = None) -> Array:
        energies = jnp.stack([m.energy(x, t, cond) for m in self.models])
        return -logsumexp(-energies + self.log_weights)

    def eps(self, x: Array, t: ArrayLike, cond: Any = None) -> Array:
        return self.schedule.sigmas[t] * jax.grad(self.energy)(x, t, cond)


class Linear(_Composite):
    """``E = sum_i c_i E_i`` with signed coefficients (negation, guidance).

    Each term's condition is the composite's ``cond`` unless the term fixes its own
    (``fixed[i]``; ``conds[i]`` is then that condition, ``None`` the null class).
    """

    data_fields = ("models", "coefficients", "conds")
    static_fields = ("schedule", "event_shape", "what", "fixed")

    def __init__(
        self,
        models: Sequence[Diffusion],
        coefficients: Sequence[float],
        what: str,
        conds: Sequence[Any] | None = None,
    ):
        super().__init__(models, what)
        self.coefficients = jnp.asarray(coefficients, jnp.float32)
        self.conds = tuple(conds) if conds is not None else (None,) * len(models)
        self.fixed = conds is not None

    def _terms(self, cond: Any):
        for i, m in enumerate(self.models):
            yield self.coefficients[i], m, self.conds[i] if self.fixed else cond

    def eps(self, x: Array, t: ArrayLike, cond: Any = None) -> Array:
        return sum(c * m.eps(x, t, k) for c, m, k in self._terms(cond))

    def energy(self, x: Array, t: ArrayLike, cond: Any = None) -> Array:
        self._require_energy()
        return sum(c * m.energy(x, t, k) for c, m, k in self._terms(cond))


class ClassifierGuided(_Composite):
    """``E = E_model - scale * log p_t(y | x)`` for a noise-aware classifier."""

    data_fields = ("models", "scale")
    static_fields = ("schedule", "event_shape", "what", "log_likelihood_fn")

    def __init__(
        self, model: Diffusion, log_likelihood_fn: Callable[[Array, Array], Array], scale: float
    ):
        super().__init__([model], "classifier guidance")
        if not callable(log_likelihood_fn):
            raise TypeError("log_likelihood_fn must be a function (x, t) -> log p_t(y | x).")
        self.log_likelihood_fn = log_likelihood_fn
        self.scale = jnp.asarray(scale, jnp.float32)

    def eps(self, x: Array, t: ArrayLike, cond: Any = None) -> Array:
        grad_ll = jax.grad(self.log_likelihood_fn)(x, t)
        return self.models[0].eps(x, t, cond) - self.schedule.sigmas[t] * self.scale * grad_ll

    def energy(self, x: Array, t: ArrayLike, cond: Any = None) -> Array:
        self._require_energy()
        return self.models[0].energy(x, t, cond) - self.scale * self.log_likelihood_fn(x, t)


def product(*models: Diffusion) -> Diffusion:
    """The product of experts ``prod_i p_i`` (energies add)."""
    return Product(models)


def mixture(models: Sequence[Diffusion], weights: ArrayLike | None = None) -> Diffusion:
    """The mixture ``sum_i w_i p_i``: energy ``-logsumexp(-E_i + log w_i)``; needs energies.

    The weights are those of the densities only when every energy is normalised at
    every level (exact models are). A trained energy ``E_raw / sigma_t`` carries a
    free constant per level and per model, so the effective weights of a mixture of
    trained models drift with ``t`` by ``exp(c_i(t) - c_j(t))``; a warning says so.
    """
    composite = Mixture(models, weights)
    if not composite.energy_normalized:
        warnings.warn(
            "mixture of energies that are not known to be normalised (trained energy "
            "models carry a free constant per level): the mixture's effective weights "
            "differ from the given ones and drift with the noise level. Exact models "
            "(GaussianMixtureDiffusion) are normalised.",
            UserWarning,
            stacklevel=2,
        )
    return composite


def negation(model: Diffusion, other: Diffusion, alpha: float) -> Diffusion:
    """``p^(1 + alpha) / q^alpha``: energy ``(1 + alpha) E_p - alpha E_q``."""
    return Linear([model, other], [1.0 + alpha, -alpha], "negation")


def guided(model: Diffusion, cond: Any, scale: float) -> Diffusion:
    """Classifier-free guidance: ``p(x | c)^(1 + w) p(x)^(-w)``.

    Energy ``(1 + w) E(x, c) - w E(x)`` and noise ``(1 + w) eps(x, c) - w eps(x)``,
    where ``E(x)`` is the unconditional (null-class) model. The composite's own
    ``cond`` argument is ignored: the condition is fixed here.
    """
    model.check_cond(cond)
    return Linear([model, model], [1.0 + scale, -scale], "guidance", conds=[cond, None])


def classifier_guided(
    model: Diffusion, log_likelihood_fn: Callable[[Array, Array], Array], scale: float
) -> Diffusion:
    """Classifier guidance with a noise-aware ``log_likelihood_fn(x, t) = log p_t(y | x)``."""
    return ClassifierGuided(model, log_likelihood_fn, scale)
