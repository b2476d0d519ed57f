import importlib
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from helpers import ScoreOnly

from numpyro_diffusion import GaussianMixtureDiffusion, VPSchedule, diffusion_prior
from numpyro_diffusion.infer.plug_and_play import (
    graikos_schedule,
    linear_schedule,
    plug_and_play,
)

S = VPSchedule.cosine(100)
PRIOR = GaussianMixtureDiffusion([[0.5, -0.3]], [[0.3, 0.3]], schedule=S)


def test_the_denoising_loss_finds_the_prior_mode():
    result = plug_and_play(PRIOR, jax.random.PRNGKey(0), num_steps=800)
    assert result.losses.shape == (800,) and np.all(np.isfinite(result.losses))
    np.testing.assert_allclose(result.params["x"], [0.5, -0.3], atol=0.15)


def observed_first_coordinate(y):
    x = diffusion_prior("x", PRIOR)
    numpyro.sample("y", dist.Normal(x[0], 0.05), obs=y)


def test_an_observation_pulls_its_coordinate_and_leaves_the_other_to_the_prior():
    result = plug_and_play(
        observed_first_coordinate,
        jax.random.PRNGKey(1),
        1.2,
        num_steps=800,
        constraint_weight=lambda i: 1.0 - i / 1000,
    )
    x = np.asarray(result.params["x"])
    assert abs(x[0] - 1.2) < 0.05
    assert abs(x[1] + 0.3) < 0.15


def test_score_only_models_find_the_same_mode():
    result = plug_and_play(
        ScoreOnly(PRIOR), jax.random.PRNGKey(2), num_steps=800, t_schedule="linear"
    )
    np.testing.assert_allclose(result.params["x"], [0.5, -0.3], atol=0.15)
    np.testing.assert_array_equal(result.levels, linear_schedule(800, 100))


def two_sites():
    diffusion_prior("a", PRIOR)
    with numpyro.plate("n", 2000):
        diffusion_prior("b", PRIOR)


def test_sites_missing_from_init_values_start_from_standard_normal_noise():
    frozen = optax.sgd(0.0)  # the result is the starting point
    a = jnp.array([3.0, 4.0])
    start = plug_and_play(
        two_sites, jax.random.PRNGKey(0), num_steps=1, optimizer=frozen, init_values={"a": a}
    ).params
    np.testing.assert_array_equal(start["a"], a)
    b = np.asarray(start["b"]).ravel()  # N(0, 1): sd 1 and unbounded, not uniform(-2, 2)
    assert abs(b.mean()) < 4 / np.sqrt(b.size) and abs(b.std() - 1) < 0.05
    assert np.abs(b).max() > 2.5


def test_sites_on_different_schedules_and_nan_observations_are_refused():
    other = GaussianMixtureDiffusion([[0.0, 0.0]], [[1.0, 1.0]], schedule=VPSchedule.cosine(80))

    def mismatched():
        diffusion_prior("x", PRIOR)
        diffusion_prior("z", other)

    with pytest.raises(ValueError, match="must share one schedule"):
        plug_and_play(mismatched, jax.random.PRNGKey(0), num_steps=5)
    with pytest.raises(ValueError, match="observed site 'y' has 1 NaN"):
        plug_and_play(observed_first_coordinate, jax.random.PRNGKey(0), jnp.nan, num_steps=5)


def test_calls_with_new_data_of_the_same_shapes_reuse_the_compiled_program():
    module = importlib.import_module("numpyro_diffusion.infer.plug_and_play")
    module._CACHE.clear()
    for i, y in enumerate((0.3, 0.9, -0.4)):
        plug_and_play(
            observed_first_coordinate, jax.random.PRNGKey(i), jnp.asarray(y), num_steps=20
        )
    (run,) = module._CACHE.values()
    assert run._cache_size() == 1  # one compilation for three data sets
    shifted = GaussianMixtureDiffusion([[-0.5, 0.3]], [[0.3, 0.3]], schedule=S)
    plug_and_play(PRIOR, jax.random.PRNGKey(0), num_steps=20)
    plug_and_play(shifted, jax.random.PRNGKey(0), num_steps=20)  # a model is data too
    assert len(module._CACHE) == 2 and all(r._cache_size() == 1 for r in module._CACHE.values())


def test_graikos_schedule_follows_the_formula():
    levels = graikos_schedule(256, 1000)
    i = 100
    expected = ((256 - i) + (256 - i) // 3 * np.cos(i / 50)) / 256 * 1000
    assert levels[i] == int(np.round(expected))
    assert levels[0] == 999 and levels[-1] <= 5
    assert levels.min() >= 0


def test_schedules_given_as_arrays_and_callables_and_refusals():
    result = plug_and_play(
        PRIOR, jax.random.PRNGKey(3), num_steps=10, t_schedule=lambda i: 90 - 9 * i
    )
    np.testing.assert_array_equal(result.levels, 90 - 9 * np.arange(10))
    with pytest.raises(ValueError, match="unknown t_schedule"):
        plug_and_play(PRIOR, jax.random.PRNGKey(3), num_steps=10, t_schedule="cosine")
    with pytest.raises(ValueError, match="expected \\(10,\\)"):
        plug_and_play(PRIOR, jax.random.PRNGKey(3), num_steps=10, t_schedule=np.arange(5))
    with pytest.raises(ValueError, match="levels 0 .. 99"):
        plug_and_play(PRIOR, jax.random.PRNGKey(3), num_steps=10, t_schedule=np.full(10, 100))

    def no_diffusion():
        numpyro.sample("z", dist.Normal())

    with pytest.raises(ValueError, match="at least one diffusion_prior"):
        plug_and_play(no_diffusion, jax.random.PRNGKey(3), num_steps=10)


def test_a_noise_scale_estimated_with_the_state_is_warned_about():
    prior = GaussianMixtureDiffusion(
        [[0.0, 1.0], [1.0, -1.0]], [[0.2, 0.3], [0.3, 0.2]], schedule=VPSchedule.cosine(100)
    )

    def model(y, sigma=None):
        x = diffusion_prior("x", prior)
        if sigma is None:
            sigma = numpyro.sample("sigma", dist.HalfNormal(0.5))
        numpyro.sample("y", dist.Normal(x, sigma).to_event(1), obs=y)

    y = jnp.array([0.9, -0.7])
    with pytest.warns(UserWarning, match="'sigma' ended at .* Fix the scale"):
        result = plug_and_play(model, jax.random.PRNGKey(0), y, num_steps=300)
    assert float(result.params["sigma"]) < 0.01  # the degenerate estimate itself
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plug_and_play(model, jax.random.PRNGKey(0), y, sigma=0.3, num_steps=300)


def test_an_improper_flat_latent_is_estimated_without_a_prior_tail_check():
    """An ImproperUniform latent (no draws, no edge) goes through the support check."""
    from numpyro.distributions import constraints

    prior = GaussianMixtureDiffusion([[0.0, 0.0]], [[1.0, 1.0]], schedule=S)

    def model(y):
        x = diffusion_prior("x", prior)
        shift = numpyro.sample("shift", dist.ImproperUniform(constraints.real, (), (2, 2)))
        numpyro.sample("y", dist.Normal(x + shift.sum(0), 0.1).to_event(1), obs=y)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither an exception nor a warning
        result = plug_and_play(model, jax.random.PRNGKey(0), jnp.ones(2), num_steps=20)
    assert result.params["shift"].shape == (2, 2)


def observed_with_prior(prior, y):
    x = diffusion_prior("x", prior)
    numpyro.sample("y", dist.Normal(x[0], 0.05), obs=y)


def test_a_batch_of_problems_in_one_program_equals_them_one_by_one():
    module = importlib.import_module("numpyro_diffusion.infer.plug_and_play")
    ys = jnp.asarray([1.2, -0.4, 0.3])
    key = jax.random.PRNGKey(4)
    batched = plug_and_play(observed_with_prior, key, PRIOR, ys, num_steps=200, in_axes=(None, 0))
    assert batched.params["x"].shape == (3, 2) and batched.losses.shape == (3, 200)
    np.testing.assert_allclose(batched.params["x"][:, 0], ys, atol=0.05)  # each its own datum
    for b, k in enumerate(jax.random.split(key, 3)):
        alone = plug_and_play(observed_with_prior, k, PRIOR, ys[b], num_steps=200)
        np.testing.assert_allclose(batched.params["x"][b], alone.params["x"], atol=1e-4)
    module._CACHE.clear()
    for i in range(2):  # new data of the same batch shape: one compilation
        plug_and_play(observed_with_prior, key, PRIOR, ys + i, num_steps=20, in_axes=(None, 0))
    (run,) = module._CACHE.values()
    assert run._cache_size() == 1


def test_batched_arguments_are_checked():
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="one per argument"):
        plug_and_play(observed_with_prior, key, PRIOR, jnp.zeros(3), num_steps=5, in_axes=(0,))
    with pytest.raises(ValueError, match="0 \\(batched\\) or None"):
        plug_and_play(observed_with_prior, key, PRIOR, jnp.zeros(3), num_steps=5, in_axes=(None, 1))
    with pytest.raises(ValueError, match="disagree on the batch size"):
        plug_and_play(
            observed_with_prior,
            key,
            PRIOR,
            jnp.zeros(3),
            num_steps=5,
            in_axes=(None, 0),
            init_values={"x": jnp.zeros((4, 2))},
        )
    with pytest.raises(ValueError, match="leading batch axis"):
        plug_and_play(observed_with_prior, key, PRIOR, 0.5, num_steps=5, in_axes=(None, 0))
    with pytest.raises(ValueError, match="observed site 'y' has 1 NaN"):
        plug_and_play(
            observed_with_prior,
            key,
            PRIOR,
            jnp.asarray([0.0, jnp.nan]),
            num_steps=5,
            in_axes=(None, 0),
        )


def test_a_sharded_batch_equals_the_vectorised_one():
    ys = jnp.linspace(-1.0, 1.0, 8)
    key = jax.random.PRNGKey(5)
    run = {
        method: plug_and_play(
            observed_with_prior,
            key,
            PRIOR,
            ys,
            num_steps=50,
            in_axes=(None, 0),
            chain_method=method,
        )
        for method in ("vectorized", "sharded")
    }
    assert len(run["sharded"].params["x"].sharding.device_set) == jax.device_count()
    np.testing.assert_allclose(
        run["sharded"].params["x"], run["vectorized"].params["x"], rtol=1e-5, atol=1e-5
    )
    with pytest.raises(ValueError, match="divisible by the"):
        plug_and_play(
            observed_with_prior,
            key,
            PRIOR,
            ys[:3],
            num_steps=5,
            in_axes=(None, 0),
            chain_method="sharded",
        )
    with pytest.raises(ValueError, match="give in_axes"):
        plug_and_play(PRIOR, key, num_steps=5, chain_method="sharded")
    with pytest.raises(ValueError, match="unknown chain_method"):
        plug_and_play(PRIOR, key, num_steps=5, chain_method="pmap")
