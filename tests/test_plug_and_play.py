import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
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


def test_score_only_models_work():
    result = plug_and_play(
        ScoreOnly(PRIOR), jax.random.PRNGKey(2), num_steps=200, t_schedule="linear"
    )
    assert np.all(np.isfinite(np.asarray(result.params["x"])))
    np.testing.assert_array_equal(result.levels, linear_schedule(200, 100))


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
