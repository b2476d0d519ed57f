import jax
import jax.numpy as jnp
import numpy as np
import pytest
from exact_networks import ExactGaussianNet

from numpyro_diffusion import DiffusionModel, EnergyUnavailableError, VPSchedule

SCHEDULE = VPSchedule.cosine(100)
STD = 0.5


def exact_model(parameterization, event_shape=(3,), schedule=SCHEDULE):
    net = ExactGaussianNet(tuple(np.asarray(schedule.alpha_bars).tolist()), parameterization, STD)
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((1, *event_shape)), jnp.zeros(1, jnp.int32))
    return DiffusionModel(net, params, schedule, parameterization, event_shape)


@pytest.mark.parametrize("parameterization", ["eps", "x0", "v", "score", "energy"])
def test_every_parameterization_gives_the_exact_eps_score_and_denoiser(parameterization):
    model = exact_model(parameterization)
    x = jnp.array([0.3, -1.2, 0.5])
    for t in (0, 40, 99):
        abar = float(SCHEDULE.alpha_bars[t])
        var = abar * STD**2 + 1 - abar
        np.testing.assert_allclose(model.eps(x, t), np.sqrt(1 - abar) * x / var, rtol=2e-4)
        np.testing.assert_allclose(model.score(x, t), -x / var, rtol=2e-4)
        np.testing.assert_allclose(
            model.denoise(x, t), np.sqrt(abar) * STD**2 / var * x, rtol=2e-3, atol=1e-3
        )
    assert model.has_energy == (parameterization == "energy")


def test_energy_is_the_log_density_up_to_a_constant():
    model = exact_model("energy")
    t = 30
    var = float(SCHEDULE.alpha_bars[t]) * STD**2 + float(SCHEDULE.sigmas[t]) ** 2
    x, y = jnp.array([0.1, 0.2, 0.3]), jnp.array([-1.0, 0.5, 2.0])
    np.testing.assert_allclose(
        model.energy(y, t) - model.energy(x, t),
        (jnp.sum(y**2) - jnp.sum(x**2)) / (2 * var),
        rtol=1e-4,
    )


def test_traced_level_under_jit_and_vmap():
    model = exact_model("energy")
    xs = jnp.ones((5, 3))
    ts = jnp.arange(5)
    out = jax.jit(jax.vmap(model.energy))(xs, ts)
    np.testing.assert_allclose(out, [model.energy(xs[0], int(t)) for t in ts], rtol=1e-5)


def test_energy_of_score_only_model_names_the_samplers_that_still_work():
    model = exact_model("eps")
    with pytest.raises(EnergyUnavailableError) as info:
        model.energy(jnp.zeros(3), 0)
    message = str(info.value)
    for word in ("ula", "uhmc", "reverse diffusion", "energy"):
        assert word in message


def test_wrong_shape_names_the_event_shape():
    model = exact_model("eps")
    with pytest.raises(ValueError, match="event_shape is \\(3,\\)"):
        model.eps(jnp.zeros((2, 3)), 0)


def test_unknown_parameterization_is_refused():
    with pytest.raises(ValueError, match="unknown parameterization 'noise'"):
        DiffusionModel(None, None, SCHEDULE, "noise", (2,))


def test_ancestral_sampling_recovers_the_gaussian():
    # 1000 levels: DDPM's plug-in x0 estimate shrinks the variance by ~4% at 100 levels.
    model = exact_model("v", event_shape=(2,), schedule=VPSchedule.cosine(1000))
    x = np.asarray(model.sample(jax.random.PRNGKey(1), 20_000))
    assert x.shape == (20_000, 2)
    np.testing.assert_allclose(x.mean(0), 0.0, atol=4 * STD / np.sqrt(20_000))
    np.testing.assert_allclose(x.std(0), STD, rtol=0.02)
