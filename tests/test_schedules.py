import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_diffusion import VPSchedule


def test_linear_matches_definition():
    s = VPSchedule.linear(1000, 1e-4, 2e-2)
    assert s.num_steps == 1000
    np.testing.assert_allclose(np.asarray(s.betas)[[0, -1]], [1e-4, 2e-2], rtol=1e-6)
    np.testing.assert_allclose(s.alphas, 1 - np.asarray(s.betas), rtol=1e-6)
    np.testing.assert_allclose(
        s.alpha_bars, np.cumprod(1 - np.linspace(1e-4, 2e-2, 1000)), rtol=1e-5
    )
    np.testing.assert_allclose(np.asarray(s.sigmas) ** 2, 1 - np.asarray(s.alpha_bars), atol=1e-6)
    assert float(s.alpha_bars[-1]) < 1e-4


def test_cosine_follows_nichol_dhariwal():
    T, off = 1000, 0.008
    s = VPSchedule.cosine(T, off)
    f = lambda t: np.cos((t / T + off) / (1 + off) * np.pi / 2) ** 2  # noqa: E731
    t = np.array([0, 10, 500, 900])
    expected = f(t + 1) / f(0)
    np.testing.assert_allclose(np.asarray(s.alpha_bars)[t], expected, rtol=1e-4, atol=1e-7)
    assert float(np.max(s.betas)) <= 0.999 + 1e-7
    assert np.all(np.diff(np.asarray(s.alpha_bars)) < 0)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: VPSchedule.linear(1), "num_steps"),
        (lambda: VPSchedule.linear(10, beta_start=0.1, beta_end=0.01), "beta_start <= beta_end"),
        (lambda: VPSchedule.linear(10, beta_start=-1.0), "0 < beta_start"),
        (lambda: VPSchedule.cosine(100, s=0.0), "offset s must be positive"),
        (lambda: VPSchedule([0.1, 1.5]), "strictly between 0 and 1"),
        (lambda: VPSchedule([[0.1, 0.2]]), "1-D array"),
    ],
)
def test_invalid_arguments_raise_with_reason(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_short_linear_schedule_warns_that_it_is_not_noise():
    with pytest.warns(UserWarning, match="far from N\\(0, I\\)"):
        VPSchedule.linear(100)


def test_config_round_trip_and_equality():
    for s in (
        VPSchedule.linear(50, 1e-3, 0.3),
        VPSchedule.cosine(64),
        VPSchedule([0.1, 0.5, 0.99]),
    ):
        assert VPSchedule.from_config(s.to_config()) == s
    assert VPSchedule.cosine(64) != VPSchedule.cosine(65)


def test_level_check_names_the_range():
    s = VPSchedule.cosine(10)
    s.check_level(9)
    with pytest.raises(ValueError, match="levels 0 .. 9"):
        s.check_level(10)
    with pytest.raises(ValueError, match="integers"):
        s.check_level(1.5)


def test_ddpm_step_to_data_is_tweedie_and_variance_is_posterior():
    s = VPSchedule.cosine(100)
    x, eps, noise = np.float32(0.7), np.float32(-0.2), np.float32(0.0)
    abar0 = float(s.alpha_bars[0])
    x0 = s.ddpm_step(x, eps, 0, -1, noise)
    np.testing.assert_allclose(x0, (x - np.sqrt(1 - abar0) * eps) / np.sqrt(abar0), rtol=1e-5)
    # one step t -> t-1 has Ho et al.'s posterior variance beta~_t
    t = 50
    var = float(s.ddpm_step(0.0, 0.0, t, t - 1, 1.0)) ** 2
    ab, ab_prev, beta = (float(v) for v in (s.alpha_bars[t], s.alpha_bars[t - 1], s.betas[t]))
    np.testing.assert_allclose(var, (1 - ab_prev) / (1 - ab) * beta, rtol=1e-4)


def test_walk_levels():
    s = VPSchedule.cosine(10)
    # every walk starts where alpha_bar >= 1e-3 (level 8 of 10 here) and ends at 0
    assert s.first_conditioned_level == 8 and float(s.alpha_bars[9]) < 1e-3
    np.testing.assert_array_equal(s.walk_levels(), np.arange(8, -1, -1))
    np.testing.assert_array_equal(s.walk_levels(4), [8, 5, 3, 0])
    np.testing.assert_array_equal(s.walk_levels(9), np.arange(8, -1, -1))
    np.testing.assert_array_equal(s.walk_levels(1), [0])
    np.testing.assert_array_equal(s.walk_levels([7, 2]), [7, 2, 0])
    np.testing.assert_array_equal(s.walk_levels([9, 2]), [9, 2, 0])  # explicit: any level
    np.testing.assert_array_equal(s.walk_levels(3, stop=4), [8, 6, 4])
    for bad, message in [
        (0, "must lie in 1 .. 9"),
        (10, "must lie in 1 .. 9"),
        ([2, 5], "strictly decreasing"),
        ([12, 0], "out of range"),
        ([1.5], "integer"),
    ]:
        with pytest.raises(ValueError, match=message):
            s.walk_levels(bad)


def test_walk_steps_end_at_the_data_or_at_a_level():
    s = VPSchedule.cosine(10)
    np.testing.assert_array_equal(s.walk_steps(3), [[8, 4], [4, 0], [0, -1]])
    np.testing.assert_array_equal(s.walk_steps(3, stop=2), [[8, 5], [5, 2]])
    np.testing.assert_array_equal(s.walk_steps(1, stop=2), [[2, 2]])


def test_equal_schedules_hash_equally():
    a, b = VPSchedule.cosine(50), VPSchedule.from_config(VPSchedule.cosine(50).to_config())
    assert a == b and hash(a) == hash(b)
    c = VPSchedule(np.asarray(a.betas, np.float64) * (1 + 1e-9))
    assert c != a  # equality is exact, so it can agree with the hash
    assert len({a, b, VPSchedule.linear(50)}) == 2


def test_noising_and_tweedie_invert_each_other():
    s = VPSchedule.cosine(100)
    x0 = jnp.array([[0.5, -1.0], [2.0, 0.1]])
    eps = jnp.array([[0.3, 0.2], [-1.0, 0.4]])
    t = jnp.array([5, 80])
    x_t = s.noise(x0, eps, t)
    np.testing.assert_allclose(x_t[1], np.sqrt(s.alpha_bars[80]) * x0[1] + s.sigmas[80] * eps[1])
    np.testing.assert_allclose(s.denoise(x_t, eps, t), x0, rtol=1e-4, atol=1e-5)
