import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from numpyro_diffusion import VPSchedule
from numpyro_diffusion.parameterization import eps_from_prediction, prediction_from_eps

SCHEDULE = VPSchedule.cosine(1000)
floats = st.floats(-5, 5, allow_nan=False, width=32)


@settings(max_examples=200, deadline=None)
@given(
    x=st.lists(floats, min_size=3, max_size=3),
    eps=st.lists(floats, min_size=3, max_size=3),
    t=st.integers(0, 999),
    parameterization=st.sampled_from(["eps", "x0", "v", "score"]),
)
def test_conversions_round_trip(x, eps, t, parameterization):
    x, eps = np.asarray(x, np.float64), np.asarray(eps, np.float64)
    abar = np.float64(SCHEDULE.alpha_bars[t])
    target = prediction_from_eps(jnp.asarray(eps), jnp.asarray(x), abar, parameterization)
    back = eps_from_prediction(target, jnp.asarray(x), abar, parameterization)
    scale = 1.0 / min(np.sqrt(abar), np.sqrt(1 - abar))
    np.testing.assert_allclose(back, eps, atol=1e-4 * scale * (1 + np.abs(x).max()))


@settings(max_examples=100, deadline=None)
@given(
    x0=st.lists(floats, min_size=2, max_size=2),
    eps=st.lists(floats, min_size=2, max_size=2),
    t=st.integers(0, 999),
)
def test_targets_are_the_definitions(x0, eps, t):
    """x_t = sqrt(abar) x0 + sigma eps: each parameterization's target is what it names."""
    x0, eps = np.asarray(x0), np.asarray(eps)
    abar = float(SCHEDULE.alpha_bars[t])
    a, s = np.sqrt(abar), np.sqrt(1 - abar)
    x_t = a * x0 + s * eps
    tol = dict(rtol=2e-3, atol=2e-3 / min(a, s))
    np.testing.assert_allclose(prediction_from_eps(eps, x_t, abar, "x0"), x0, **tol)
    np.testing.assert_allclose(prediction_from_eps(eps, x_t, abar, "v"), a * eps - s * x0, **tol)
    np.testing.assert_allclose(prediction_from_eps(eps, x_t, abar, "score"), -eps / s, **tol)
