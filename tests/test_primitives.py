import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from helpers import ScoreOnly
from numpyro.infer import Predictive
from numpyro.infer.util import log_density

from numpyro_diffusion import (
    EnergyUnavailableError,
    GaussianMixtureDiffusion,
    VPSchedule,
    current_noise_level,
    diffusion_factor,
    diffusion_prior,
    noise_level,
)
from numpyro_diffusion.primitives import DiffusionFactor, DiffusionPrior, gradient_only

S = VPSchedule.cosine(50)
A = GaussianMixtureDiffusion(
    [[0.0, 1.0], [1.0, -1.0]], [[0.3, 0.3], [0.5, 0.2]], weights=[0.4, 0.6], schedule=S
)
B = GaussianMixtureDiffusion([[0.5, 0.0]], [[1.0, 0.4]], schedule=S)


def prior_and_factors(weight):
    x = diffusion_prior("x", A)
    diffusion_factor("b", B, x, weight=weight)


def test_log_density_is_the_sum_of_energies_under_jit_with_traced_level():
    x = jnp.array([0.3, -0.4])

    @jax.jit
    def joint(t, weight):
        with noise_level(t):
            lp, _ = log_density(prior_and_factors, (weight,), {}, {"x": x})
        return lp

    for t in (0, 11, 49):
        for weight in (1.0, -0.4):
            expected = -A.energy(x, t) - weight * B.energy(x, t)
            np.testing.assert_allclose(joint(jnp.asarray(t), weight), expected, rtol=1e-5)


def test_current_noise_level_reads_the_innermost_handler():
    assert current_noise_level() == 0
    with noise_level(7):
        assert current_noise_level() == 7
        with noise_level(3):
            assert current_noise_level() == 3
        assert current_noise_level() == 7
    assert current_noise_level() == 0


def test_levels_are_checked():
    with pytest.raises(ValueError, match="one integer level"):
        noise_level(1.5)
    with pytest.raises(ValueError, match="levels start at 0"):
        noise_level(-1)
    with pytest.raises(ValueError, match="levels 0 .. 49"):
        with noise_level(50):
            numpyro.handlers.seed(prior_and_factors, 0)(1.0)


def test_predictive_gives_prior_draws_with_the_mixture_moments():
    n = 4000

    def model():
        diffusion_prior("x", A)

    x = np.asarray(Predictive(model, num_samples=n)(jax.random.PRNGKey(0))["x"])
    assert x.shape == (n, 2)
    w, m, sd = np.asarray(A.weights), np.asarray(A.means), np.asarray(A.stds)
    mean = w @ m
    var = w @ (sd**2 + m**2) - mean**2
    np.testing.assert_array_less(np.abs(x.mean(0) - mean), 4 * np.sqrt(var / n))
    se_var = np.sqrt(np.var((x - mean) ** 2, axis=0) / n)
    np.testing.assert_array_less(np.abs(x.var(0) - var), 4 * se_var)


def test_plates_give_independent_draws():
    n = 4000

    def model():
        with numpyro.plate("items", 3):
            diffusion_prior("x", A)

    x = np.asarray(Predictive(model, num_samples=n)(jax.random.PRNGKey(1))["x"])
    assert x.shape == (n, 3, 2)
    corr = np.corrcoef(x[:, 0, 0], x[:, 1, 0])[0, 1]
    assert abs(corr) < 4 / np.sqrt(n)
    assert not np.allclose(x[:, 0], x[:, 1])
    lp, _ = log_density(model, (), {}, {"x": x[0]})
    expected = sum(-A.energy(x[0, i], 0) for i in range(3))
    np.testing.assert_allclose(lp, expected, rtol=1e-5)


def test_score_only_sites_have_gradients_but_no_values():
    so = ScoreOnly(A)
    d = DiffusionPrior(so, t=5)
    x = jnp.array([0.2, 0.1])
    with pytest.raises(EnergyUnavailableError, match="log-density value was requested"):
        d.log_prob(x)
    with gradient_only():
        assert float(d.log_prob(x)) == 0.0
        np.testing.assert_allclose(jax.grad(d.log_prob)(x), A.score(x, 5), rtol=1e-5)


def test_wrong_things_at_diffusion_sites():
    with pytest.raises(TypeError, match="diffusion model"):
        numpyro.handlers.seed(lambda: diffusion_prior("x", dist.Normal()), 0)()
    with pytest.raises(ValueError, match="event_shape \\(2,\\)"):
        DiffusionPrior(A).log_prob(jnp.zeros(3))


def test_the_noise_level_follows_numpyros_handler_protocol():
    seen = {}

    def model():
        seen["level"] = current_noise_level()

    with noise_level(7):
        numpyro.handlers.seed(model, 0)()  # seed passes the message on
        assert seen["level"] == 7
        with numpyro.handlers.block():
            model()  # block hides effects from outside, as it hides masks
        assert seen["level"] == 0
    with noise_level(9), noise_level(4):
        model()
    assert seen["level"] == 4


def test_predictive_under_a_noise_level_draws_from_that_level():
    n, t = 20_000, 30

    def model():
        diffusion_prior("x", A)

    with noise_level(t):
        x = np.asarray(Predictive(model, num_samples=n)(jax.random.PRNGKey(2))["x"])
    mu, var = (np.asarray(v, np.float64) for v in A.component_moments(t))
    w = np.asarray(A.weights, np.float64)
    mean = w @ mu
    total_var = w @ (var + mu**2) - mean**2
    np.testing.assert_array_less(np.abs(x.mean(0) - mean), 4.5 * np.sqrt(total_var / n))
    se_var = np.sqrt(np.var((x - mean) ** 2, axis=0) / n)
    np.testing.assert_array_less(np.abs(x.var(0) - total_var), 4.5 * se_var)


def test_site_distributions_are_pytrees_with_traced_levels():
    ts = jnp.arange(0, 40, 10)
    x = jnp.array([0.2, -0.1])
    priors = jax.vmap(lambda t: DiffusionPrior(A, t=t))(ts)  # no leaked tracer
    lp = jax.vmap(lambda d: d.log_prob(x))(priors)
    np.testing.assert_allclose(lp, [-A.energy(x, int(t)) for t in ts], rtol=1e-5)
    factors = jax.vmap(lambda w: DiffusionFactor(B, t=3, weight=w))(jnp.array([1.0, -0.5]))
    lp = jax.vmap(lambda d: d.log_prob(x))(factors)
    np.testing.assert_allclose(lp, [-B.energy(x, 3), 0.5 * B.energy(x, 3)], rtol=1e-5)
