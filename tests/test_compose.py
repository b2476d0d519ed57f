import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import ScoreOnly
from jax.scipy.special import logsumexp

from numpyro_diffusion import (
    EnergyUnavailableError,
    GaussianMixtureDiffusion,
    VPSchedule,
    classifier_guided,
    guided,
    mixture,
    negation,
    product,
)

S = VPSchedule.cosine(50)
A = GaussianMixtureDiffusion([[0.0, 1.0], [1.0, -1.0]], [[0.3, 0.3], [0.5, 0.2]], schedule=S)
B = GaussianMixtureDiffusion([[0.5, 0.0]], [[1.0, 0.4]], schedule=S)
XS = jnp.array([[0.1, 0.2], [1.0, -0.8], [-1.5, 0.4]])
LEVELS = [0, 13, 49]


def energies(model, t):
    return jax.vmap(model.energy, (0, None))(XS, t)


def assert_equal_up_to_constant(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    np.testing.assert_allclose(a - a[0], b - b[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("t", LEVELS)
def test_product_adds_energies_and_eps(t):
    p = product(A, B)
    np.testing.assert_allclose(energies(p, t), energies(A, t) + energies(B, t), rtol=1e-5)
    x = XS[1]
    np.testing.assert_allclose(p.eps(x, t), A.eps(x, t) + B.eps(x, t), rtol=1e-5)
    np.testing.assert_allclose(p.score(x, t), A.score(x, t) + B.score(x, t), rtol=1e-4)


@pytest.mark.parametrize("t", LEVELS)
def test_mixture_energy_is_the_logsumexp(t):
    m = mixture([A, B], [0.3, 0.7])
    lp = jax.vmap(
        lambda x: logsumexp(
            jnp.array([jnp.log(0.3) + A.log_prob(x, t), jnp.log(0.7) + B.log_prob(x, t)])
        )
    )(XS)
    np.testing.assert_allclose(energies(m, t), -lp, rtol=1e-5)
    x = XS[0]
    np.testing.assert_allclose(m.score(x, t), jax.grad(lambda y: -m.energy(y, t))(x), rtol=1e-4)


@pytest.mark.parametrize("t", LEVELS)
def test_negation(t):
    n = negation(A, B, 0.3)
    np.testing.assert_allclose(
        energies(n, t), 1.3 * energies(A, t) - 0.3 * energies(B, t), rtol=1e-5
    )
    np.testing.assert_allclose(
        n.eps(XS[2], t), 1.3 * A.eps(XS[2], t) - 0.3 * B.eps(XS[2], t), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("t", LEVELS)
@pytest.mark.parametrize("w", [0.5, 2.0])
def test_guidance_at_cond_k_is_the_tilted_density(t, w):
    g = guided(A, 1, w)
    mu, var = A.component_moments(t)
    log_n1 = jax.vmap(lambda x: -0.5 * jnp.sum((x - mu[1]) ** 2 / var[1]))(XS)
    log_p = jax.vmap(A.log_prob, (0, None))(XS, t)
    assert_equal_up_to_constant(energies(g, t), -((1 + w) * log_n1 - w * log_p))
    x = XS[0]
    np.testing.assert_allclose(
        g.eps(x, t), (1 + w) * A.eps(x, t, 1) - w * A.eps(x, t), rtol=1e-4, atol=1e-6
    )


def test_classifier_guidance_adds_the_noise_aware_log_likelihood():
    log_lik = lambda x, t: B.log_prob(x, t)  # noqa: E731
    c = classifier_guided(A, log_lik, 2.0)
    t = 7
    np.testing.assert_allclose(
        energies(c, t), energies(A, t) - 2.0 * jax.vmap(log_lik, (0, None))(XS, t), rtol=1e-5
    )
    x = XS[1]
    np.testing.assert_allclose(c.score(x, t), A.score(x, t) + 2.0 * B.score(x, t), rtol=1e-4)


def test_score_only_models_compose_by_score_arithmetic():
    a, b = ScoreOnly(A), ScoreOnly(B)
    x, t = XS[0], 9
    for composite, expected in [
        (product(a, b), A.eps(x, t) + B.eps(x, t)),
        (negation(a, b, 0.5), 1.5 * A.eps(x, t) - 0.5 * B.eps(x, t)),
        (guided(a, 0, 1.0), 2.0 * A.eps(x, t, 0) - A.eps(x, t)),
    ]:
        assert not composite.has_energy
        np.testing.assert_allclose(composite.eps(x, t), expected, rtol=1e-5, atol=1e-6)
        with pytest.raises(EnergyUnavailableError, match="ula"):
            composite.energy(x, t)
    with pytest.raises(EnergyUnavailableError, match="mixture of score-only"):
        mixture([a, B])


def test_refusals_of_incompatible_models():
    other_schedule = GaussianMixtureDiffusion(
        [[0.0, 0.0]], [[1.0, 1.0]], schedule=VPSchedule.cosine(60)
    )
    with pytest.raises(ValueError, match="must share one schedule"):
        product(A, other_schedule)
    three_d = GaussianMixtureDiffusion([[0.0, 0.0, 0.0]], [[1.0, 1.0, 1.0]], schedule=S)
    with pytest.raises(ValueError, match="share one event shape"):
        negation(A, three_d, 0.5)
    with pytest.raises(ValueError, match="2 positive numbers"):
        mixture([A, B], [1.0, -1.0])
    with pytest.raises(ValueError, match="at least one model"):
        product()


def test_compositions_pass_cond_to_their_parts():
    x, t = jnp.array([0.3, -0.2]), 10
    for k in (0, 1):
        np.testing.assert_allclose(product(A, A).energy(x, t, k), 2 * A.energy(x, t, k), rtol=1e-6)
        np.testing.assert_allclose(mixture([A, A]).energy(x, t, k), A.energy(x, t, k), rtol=1e-5)
        np.testing.assert_allclose(
            negation(A, A, 0.5).eps(x, t, k), A.eps(x, t, k), rtol=1e-4, atol=1e-6
        )
        cg = classifier_guided(A, lambda y, s: -jnp.sum(y**2), 0.3)
        np.testing.assert_allclose(
            cg.energy(x, t, k), A.energy(x, t, k) + 0.3 * jnp.sum(x**2), rtol=1e-5
        )
    with pytest.raises(ValueError, match="out of range"):
        product(A, B).energy(x, t, 1)  # B has one component


def test_compositions_are_pytrees_and_mixing_unnormalised_energies_warns():
    composite = guided(negation(A, B, 0.3), 0, 2.0)
    leaves = jax.tree.leaves(composite)
    # twice the negation (its parts and its coefficients), guidance's coefficients and cond
    assert len(leaves) == 2 * (len(jax.tree.leaves((A, B))) + 1) + 1 + 1
    rebuilt = jax.tree.map(lambda v: v, composite)
    x = jnp.array([0.2, 0.4])
    np.testing.assert_allclose(rebuilt.energy(x, 5), composite.energy(x, 5), rtol=1e-6)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mixture([A, B])  # exact models are normalised: no warning
    with pytest.warns(UserWarning, match="not known to be normalised"):
        mixture([product(A, B), B])
