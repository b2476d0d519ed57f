"""Inpainting on an exact Gaussian mixture, where the posterior is known in closed form."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from helpers import assert_moments
from numpyro.infer.util import log_density

from numpyro_diffusion import GaussianMixtureDiffusion, VPSchedule, noise_level
from numpyro_diffusion.infer import AnnealedMCMC, plug_and_play
from numpyro_diffusion.tasks.inpainting import inpainting_model, replacement_inpainting

S = VPSchedule.cosine(100)
MEANS = np.array([[0.0, -1.0, 1.0], [0.0, 1.0, 0.0], [2.0, 0.0, 0.0]])
STDS = np.full((3, 3), 0.3)
PRIOR = GaussianMixtureDiffusion(MEANS, STDS, schedule=S)
MASK = np.array([True, False, False])
Y0, NOISE = 0.1, 0.05


def exact_posterior():
    """Moments of (x1, x2) given y0 = x0 + noise: a mixture over the components."""
    var0 = STDS[:, 0] ** 2 + NOISE**2
    log_w = -0.5 * (Y0 - MEANS[:, 0]) ** 2 / var0 - 0.5 * np.log(var0)
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    mu = MEANS[:, 1:]
    mean = w @ mu
    second = np.einsum("k,ki,kj->ij", w, mu, mu) + np.diag(w @ STDS[:, 1:] ** 2)
    return mean, second - np.outer(mean, mean)


def exact_cell_shares(n=400_000, seed=0):
    """Shares of the nearest-(x1, x2)-mean cells under the exact posterior (Monte Carlo)."""
    var0 = STDS[:, 0] ** 2 + NOISE**2
    log_w = -0.5 * (Y0 - MEANS[:, 0]) ** 2 / var0 - 0.5 * np.log(var0)
    w = np.exp(log_w - log_w.max())
    rng = np.random.default_rng(seed)
    k = rng.choice(3, size=n, p=w / w.sum())
    x = MEANS[k, 1:] + STDS[k, 1:] * rng.standard_normal((n, 2))
    return cell_shares(x)


def cell_shares(x12):
    near = np.argmin(np.sum((x12[:, None] - MEANS[None, :, 1:]) ** 2, -1), axis=1)
    return np.bincount(near, minlength=3) / len(near)


def observed():
    return jnp.array([Y0, 0.0, 0.0])


def test_log_density_is_prior_plus_masked_likelihood():
    x = jnp.array([0.2, -0.5, 0.7])
    with noise_level(0):
        lp, _ = log_density(
            inpainting_model, (PRIOR, observed(), MASK), {"noise_std": NOISE}, {"x": x}
        )
    expected = PRIOR.log_prob(x, 0) + dist.Normal(x[0], NOISE).log_prob(Y0)
    np.testing.assert_allclose(lp, expected, rtol=1e-5)


def test_unobserved_nans_are_ignored():
    x = jnp.array([0.2, -0.5, 0.7])
    with_nan = jnp.array([Y0, jnp.nan, jnp.nan])
    grad = jax.grad(
        lambda x: log_density(inpainting_model, (PRIOR, with_nan, MASK), {}, {"x": x})[0]
    )(x)
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize(
    "observed_value, mask, message",
    [
        (jnp.zeros(2), MASK, "observed has shape"),
        (jnp.zeros(3), np.ones(2, bool), "mask has shape"),
    ],
)
def test_wrong_shapes_are_named(observed_value, mask, message):
    with pytest.raises(ValueError, match=message):
        log_density(inpainting_model, (PRIOR, observed_value, mask), {}, {"x": jnp.zeros(3)})
    with pytest.raises(ValueError, match=message):
        replacement_inpainting(PRIOR, jax.random.PRNGKey(0), observed_value, mask, 4)


def test_replacement_refuses_a_batch():
    with pytest.raises(ValueError, match="expected event_shape"):
        replacement_inpainting(PRIOR, jax.random.PRNGKey(0), jnp.zeros((2, 3)), MASK, 4)


def test_annealed_hmc_matches_the_exact_posterior():
    sampler = AnnealedMCMC(
        functools.partial(inpainting_model, PRIOR, noise_std=NOISE),
        kernel="hmc",
        num_chains=2000,
        steps_per_level=6,
        levels=40,
        progress_bar=False,
    )
    sampler.run(jax.random.PRNGKey(0), observed(), jnp.asarray(MASK))
    x = np.asarray(sampler.get_samples()["x"])
    mean, cov = exact_posterior()
    assert_moments(x[:, 1:], mean, cov)
    assert abs(x[:, 0].mean() - Y0) < 0.05
    # a good first step size: no level lost to divergent transitions
    assert sampler.num_divergent < 0.001 * 2000 * 40 * 3


def test_replacement_keeps_the_observation_and_finds_the_right_components():
    x = np.asarray(replacement_inpainting(PRIOR, jax.random.PRNGKey(1), observed(), MASK, 2000))
    np.testing.assert_allclose(x[:, 0], Y0)
    # components 0 and 1 share x0 = 0; the third (x0 = 2) has ~1e-9 posterior mass.
    # Replacement is not exact, so only the cells' shares are checked, to 4 binomial SEs.
    shares, exact = cell_shares(x[:, 1:]), exact_cell_shares()
    se = np.sqrt(exact * (1 - exact) / len(x))
    assert np.all(np.abs(shares - exact) < 4 * se + 0.02), (shares, exact)


def test_plug_and_play_inpaints_a_batch_under_a_plate():
    batch = jnp.stack([observed(), jnp.array([2.0, 0.0, 0.0])])
    result = plug_and_play(
        functools.partial(inpainting_model, PRIOR, noise_std=NOISE),
        jax.random.PRNGKey(2),
        batch,
        jnp.asarray(MASK),
        num_steps=400,
    )
    x = np.asarray(result.params["x"])
    assert x.shape == (2, 3)
    np.testing.assert_allclose(x[:, 0], [Y0, 2.0], atol=0.1)
    # the second image can only be the third component: (x1, x2) near (0, 0)
    np.testing.assert_allclose(x[1, 1:], [0.0, 0.0], atol=0.3)
