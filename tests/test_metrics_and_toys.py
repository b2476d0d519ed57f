import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_diffusion.metrics import mean_and_standard_error, mmd, wasserstein2
from numpyro_diffusion.tasks.toy2d import bar, box, grid_density, ring


def test_toy_log_probs_are_normalised():
    for toy in (ring(), bar(), box((0.3, 0.0), (0.1, 0.5))):
        g = grid_density(toy.log_prob, lim=2.5, size=1251)
        # grid_density renormalises; the raw density must already integrate to ~1
        xs = g.xs
        xx, yy = np.meshgrid(xs, xs, indexing="ij")
        pts = jnp.asarray(np.stack([xx.ravel(), yy.ravel()], 1))
        mass = np.exp(np.asarray(toy.log_prob(pts), np.float64)).sum() * (xs[1] - xs[0]) ** 2
        np.testing.assert_allclose(mass, 1.0, atol=0.02, err_msg=toy.name)


def test_samples_lie_in_the_support():
    x = np.asarray(bar().sample(jax.random.PRNGKey(0), 1000))
    assert np.all(np.abs(x[:, 0]) <= 0.2) and np.all(np.abs(x[:, 1]) <= 1.0)
    r = np.linalg.norm(np.asarray(ring().sample(jax.random.PRNGKey(1), 1000)), axis=1)
    assert abs(r.mean() - 0.5) < 0.01


def test_grid_reference_draws_follow_the_density():
    g = grid_density(ring().log_prob)
    x = np.asarray(g.sample(jax.random.PRNGKey(2), 4000))
    r = np.linalg.norm(x, axis=1)
    assert abs(r.mean() - 0.5) < 0.01 and abs(r.std() - 0.03) < 0.005


def test_mmd_and_w2_tell_same_from_different():
    a = ring().sample(jax.random.PRNGKey(3), 800)
    b = ring().sample(jax.random.PRNGKey(4), 800)
    c = ring(radius=0.6).sample(jax.random.PRNGKey(5), 800)
    assert abs(float(mmd(a, b))) < 0.01 < float(mmd(a, c))
    assert wasserstein2(a, b) < 0.8 * wasserstein2(a, c)
    assert wasserstein2(a, a) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="one shape"):
        wasserstein2(a, c[:10])


def test_frechet_distance_handles_singular_covariances_and_refuses_nonsense():
    from numpyro_diffusion.metrics import frechet_distance

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((5, 20)), rng.standard_normal((6, 20))  # n < d: singular
    d = frechet_distance(a, b)
    assert np.isfinite(d) and d > 0
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-4)
    with pytest.raises(ValueError, match="at least 2 samples"):
        frechet_distance(a[:1], b)
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.full((3, 2), np.nan), b[:, :2])


def test_mean_and_standard_error_over_replicates():
    mean, se = mean_and_standard_error([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5
    np.testing.assert_allclose(se, np.sqrt(5.0 / 3.0) / 2.0)  # sample variance 5/3, n = 4
    assert np.isnan(mean_and_standard_error([7.0])[1])  # one replicate: no error estimate
