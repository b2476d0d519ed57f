import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_diffusion import GaussianMixtureDiffusion, VPSchedule

SCHEDULE = VPSchedule.cosine(200)
GMD = GaussianMixtureDiffusion(
    [[0.0, 1.0], [1.5, -1.0], [-1.0, -0.5]],
    [[0.2, 0.3], [0.4, 0.1], [0.3, 0.3]],
    weights=[0.5, 0.3, 0.2],
    schedule=SCHEDULE,
)
POINTS = jnp.array([[0.1, 0.2], [1.0, -1.0], [-2.0, 0.5]])


@pytest.mark.parametrize("t", [0, 17, 120, 199])
def test_score_is_gradient_of_log_prob(t):
    for x in POINTS:
        np.testing.assert_allclose(
            GMD.score(x, t), jax.grad(GMD.log_prob)(x, t), rtol=1e-5, atol=1e-5
        )
        np.testing.assert_allclose(
            GMD.eps(x, t), -SCHEDULE.sigmas[t] * GMD.score(x, t), rtol=1e-5, atol=1e-6
        )


def test_log_prob_is_normalised():
    g = np.linspace(-5, 5, 601)
    xx, yy = np.meshgrid(g, g, indexing="ij")
    pts = jnp.asarray(np.stack([xx.ravel(), yy.ravel()], 1))
    for t in (0, 50):
        p = np.exp(np.asarray(jax.vmap(GMD.log_prob, (0, None))(pts, t)))
        np.testing.assert_allclose(p.sum() * (g[1] - g[0]) ** 2, 1.0, atol=2e-3)


def test_energy_differences_equal_log_prob_differences():
    for t in (0, 60):
        e = jax.vmap(GMD.energy, (0, None))(POINTS, t)
        lp = jax.vmap(GMD.log_prob, (0, None))(POINTS, t)
        np.testing.assert_allclose(e[1:] - e[0], -(lp[1:] - lp[0]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("t", [30, 80])
def test_denoise_matches_monte_carlo_posterior_mean(t):
    """E[x_0 | x_t] by self-normalised importance sampling over exact data draws."""
    n = 400_000
    x0 = GMD.sample(jax.random.PRNGKey(0), n)
    abar = SCHEDULE.alpha_bars[t]
    x_t = jnp.array([0.4, 0.1])
    log_lik = -0.5 * jnp.sum((x_t - jnp.sqrt(abar) * x0) ** 2, 1) / (1 - abar)
    w = jax.nn.softmax(log_lik)
    estimate = w @ x0
    ess = 1.0 / jnp.sum(w**2)
    se = jnp.sqrt(w @ (x0 - estimate) ** 2 / ess)
    assert float(ess) > 500
    np.testing.assert_array_less(jnp.abs(GMD.denoise(x_t, t) - estimate), 5 * se + 1e-4)


def test_last_level_is_close_to_standard_normal():
    x = GMD.sample(jax.random.PRNGKey(1), 50_000, t=SCHEDULE.num_steps - 1)
    np.testing.assert_allclose(x.mean(0), 0.0, atol=0.02)
    np.testing.assert_allclose(np.cov(np.asarray(x).T), np.eye(2), atol=0.03)
    lp = GMD.log_prob(jnp.array([0.3, -0.2]), SCHEDULE.num_steps - 1)
    np.testing.assert_allclose(lp, -np.log(2 * np.pi) - 0.5 * 0.13, atol=1e-3)


def test_exact_draws_match_mixture_moments():
    x = np.asarray(GMD.sample(jax.random.PRNGKey(2), 200_000))
    w, m = np.asarray(GMD.weights), np.asarray(GMD.means)
    np.testing.assert_allclose(x.mean(0), w @ m, atol=0.01)


def test_cond_restricts_to_one_component():
    x = jnp.array([0.3, 0.7])
    t = 10
    mu, var = GMD.component_moments(t)
    expected = -0.5 * jnp.sum((x - mu[1]) ** 2 / var[1] + jnp.log(2 * jnp.pi * var[1]))
    np.testing.assert_allclose(GMD.log_prob(x, t, cond=1), expected, rtol=1e-5)
    draws = GMD.sample(jax.random.PRNGKey(3), 20_000, cond=2)
    np.testing.assert_allclose(draws.mean(0), GMD.means[2], atol=0.01)
    traced = jax.jit(lambda k: GMD.energy(x, t, cond=k))(jnp.asarray(1))
    np.testing.assert_allclose(traced, -expected, rtol=1e-5)


def test_generic_ancestral_sampler_reproduces_the_data():
    """The base-class DDPM sampler, driven by the exact eps, recovers the mixture."""
    from numpyro_diffusion.interface import Diffusion

    x = np.asarray(Diffusion.sample(GMD, jax.random.PRNGKey(4), 20_000))
    w, m = np.asarray(GMD.weights), np.asarray(GMD.means)
    np.testing.assert_allclose(x.mean(0), w @ m, atol=0.03)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(means=[0.0, 1.0], stds=[1.0, 1.0]), "shape \\(K, D\\)"),
        (dict(means=[[0.0, 1.0]], stds=[[1.0]]), "shape of means"),
        (dict(means=[[0.0, 1.0]], stds=[[1.0, -1.0]]), "positive"),
        (dict(means=[[0.0], [1.0]], stds=[[1.0], [1.0]], weights=[1.0]), "2 positive"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GaussianMixtureDiffusion(**kwargs)


def test_wrong_shape_names_event_shape():
    with pytest.raises(ValueError, match="event_shape is \\(2,\\)"):
        GMD.log_prob(jnp.zeros(3), 0)
