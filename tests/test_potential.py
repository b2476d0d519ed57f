import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from helpers import ScoreOnly

from numpyro_diffusion import (
    EnergyUnavailableError,
    GaussianMixtureDiffusion,
    VPSchedule,
    diffusion_factor,
    diffusion_prior,
)
from numpyro_diffusion.infer import annealed_potential
from numpyro_diffusion.infer.potential import initialize_potential

S = VPSchedule.cosine(50)
A = GaussianMixtureDiffusion([[0.0, 1.0], [1.0, -1.0]], [[0.3, 0.3], [0.5, 0.2]], schedule=S)
B = GaussianMixtureDiffusion([[0.5, 0.0]], [[1.0, 0.4]], schedule=S)
Y = jnp.array([[0.2, 0.3], [0.1, 0.5], [0.4, 0.2]])


def composed():
    x = diffusion_prior("x", A)
    diffusion_factor("b", B, x, weight=-0.3)


def test_prior_plus_factor_equals_the_exact_energies_under_jit():
    pot = annealed_potential(composed)
    assert pot.has_energy and pot.schedule == S
    u = jax.jit(pot.potential_fn)
    for t in (0, 20, 49):
        for z in (jnp.array([0.1, -0.2]), jnp.array([1.5, 0.7])):
            expected = A.energy(z, t) - 0.3 * B.energy(z, t)
            np.testing.assert_allclose(u(z, jnp.asarray(t)), expected, rtol=1e-5)
            np.testing.assert_allclose(
                jax.jit(pot.grad_fn)(z, jnp.asarray(t)),
                -(A.score(z, t) - 0.3 * B.score(z, t)),
                rtol=1e-4,
                atol=1e-5,
            )
    np.testing.assert_array_equal(pot.diffusion_mask, [True, True])


def noisy_observations(y):
    x = diffusion_prior("x", A)
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    with numpyro.plate("obs", y.shape[0]):
        numpyro.sample("y", dist.Normal(x, sigma).to_event(1), obs=y)
    numpyro.factor("keep_right", -jnp.sum(jax.nn.relu(-x[0])))


def test_extra_positive_latent_observations_plates_and_factors():
    pot = annealed_potential(noisy_observations, Y, rng_key=jax.random.PRNGKey(2))
    z = pot.init_position
    assert z.shape == (3,)
    # ravel order is alphabetical: sigma (unconstrained log scale), then x
    np.testing.assert_array_equal(pot.diffusion_mask, [False, True, True])
    for t in (0, 25):
        u, g = jax.value_and_grad(pot.potential_fn)(z, t)
        assert np.isfinite(u) and np.all(np.isfinite(g))
        sites = pot.constrain_fn(z)
        x, sigma = sites["x"], sites["sigma"]
        expected = (
            A.energy(x, t)
            - dist.HalfNormal(1.0).log_prob(sigma)
            - jnp.log(sigma)  # log-Jacobian of sigma = exp(z_sigma)
            - dist.Normal(x, sigma).log_prob(Y).sum()
            + jnp.sum(jax.nn.relu(-x[0]))
        )
        np.testing.assert_allclose(u, expected, rtol=1e-5)
        np.testing.assert_allclose(pot.grad_fn(z, t), g, rtol=1e-5)


def test_score_only_potential_has_a_gradient_and_refuses_values():
    so = ScoreOnly(A)

    def model():
        x = diffusion_prior("x", so)
        numpyro.sample("y", dist.Normal(x, 0.5).to_event(1), obs=jnp.array([0.1, 0.2]))

    pot = annealed_potential(model)
    assert not pot.has_energy
    z = jnp.array([0.3, -0.1])
    with pytest.raises(EnergyUnavailableError, match="only grad_fn"):
        pot.potential_fn(z, 3)
    expected = -(A.score(z, 3) + (jnp.array([0.1, 0.2]) - z) / 0.25)
    np.testing.assert_allclose(jax.jit(pot.grad_fn)(z, 3), expected, rtol=1e-4)


def test_sites_on_different_schedules_are_refused():
    other = GaussianMixtureDiffusion([[0.0, 0.0]], [[1.0, 1.0]], schedule=VPSchedule.cosine(40))

    def model():
        x = diffusion_prior("x", A)
        diffusion_factor("o", other, x)

    with pytest.raises(ValueError, match="must share one schedule"):
        annealed_potential(model)


def test_a_bare_diffusion_model_is_a_one_site_program():
    pot = annealed_potential(A)
    np.testing.assert_allclose(
        pot.potential_fn(jnp.ones(2), 4), A.energy(jnp.ones(2), 4), rtol=1e-6
    )


def test_the_start_point_search_moves_every_chain_at_once():
    # NumPyro's search over a batch of keys is a lax.map (a scan over chains): on a GPU
    # one chain after another costs more than the whole walk at large chain counts
    family, _ = initialize_potential(jax.random.PRNGKey(0), noisy_observations, (Y,), {})
    keys = jax.random.split(jax.random.PRNGKey(1), 16)
    jaxpr = str(jax.make_jaxpr(lambda k: family.init_fn(k, (Y,), {}))(keys))
    assert "scan" not in jaxpr and "while" in jaxpr
    starts = family.init_fn(keys, (Y,), {})
    assert starts.shape == (16, 3) and np.all(np.isfinite(starts))
    # each chain's start is the one its key gives alone
    np.testing.assert_array_equal(starts[3], family.init_fn(keys[3:4], (Y,), {})[0])
    # and a batch of keys given to initialize_potential starts at the same points
    _, batch = initialize_potential(keys, noisy_observations, (Y,), {})
    np.testing.assert_array_equal(batch, starts)
