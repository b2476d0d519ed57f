"""Flax modules that output the exact targets of a Gaussian's diffusion (for tests)."""

import flax.linen as nn
import jax.numpy as jnp


class ExactGaussianNet(nn.Module):
    """Exact prediction for data ~ N(0, std^2 I) under a schedule's alpha_bars.

    ``parameterization`` picks the target; ``"energy"`` returns the raw energy
    ``sigma ||x||^2 / (2 var_t)`` whose gradient is eps.
    """

    alpha_bars: tuple
    parameterization: str
    std: float = 0.5

    @nn.compact
    def __call__(self, x, t, cond=None):
        self.param("unused", nn.initializers.zeros, ())
        abar = jnp.asarray(self.alpha_bars)[t].reshape((-1,) + (1,) * (x.ndim - 1))
        a, s = jnp.sqrt(abar), jnp.sqrt(1 - abar)
        var = abar * self.std**2 + s**2
        eps = s * x / var
        x0 = (x - s * eps) / a
        if self.parameterization == "eps":
            return eps
        if self.parameterization == "x0":
            return x0
        if self.parameterization == "v":
            return a * eps - s * x0
        if self.parameterization == "score":
            return -x / var
        return jnp.sum(s * x**2 / (2 * var), axis=tuple(range(1, x.ndim)))
