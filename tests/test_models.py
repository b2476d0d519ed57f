import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from exact_networks import ExactGaussianNet

from numpyro_diffusion import (
    DiffusionModel,
    EnergyUnavailableError,
    ResidualMLP,
    VPSchedule,
    guided,
)

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


def respaced_variance(schedule, walk, var_data):
    """Exact variance of respaced DDPM with the exact eps of N(0, var_data): each step is
    linear in x plus independent noise, so the variance follows a recursion."""
    abar = np.asarray(schedule.alpha_bars, np.float64)
    v = 1.0
    for s, t in zip(walk, list(walk[1:]) + [-1], strict=True):
        a_s = abar[s]
        a_t = abar[t] if t >= 0 else 1.0
        var_s = a_s * var_data + 1 - a_s
        x0_gain = np.sqrt(a_s) * var_data / var_s
        beta_st = 1 - a_s / a_t
        coef_x0 = np.sqrt(a_t) * beta_st / (1 - a_s)
        coef_x = np.sqrt(a_s / a_t) * (1 - a_t) / (1 - a_s)
        var_step = (1 - a_t) / (1 - a_s) * beta_st
        v = (coef_x0 * x0_gain + coef_x) ** 2 * v + max(var_step, 0.0)
    return v


@pytest.mark.parametrize("levels", [None, 10])
def test_respaced_ancestral_sampling_has_the_predicted_variance(levels):
    model = exact_model("eps", event_shape=(2,))
    n = 40_000
    x = np.asarray(model.sample(jax.random.PRNGKey(2), n, levels=levels))
    expected = respaced_variance(SCHEDULE, SCHEDULE.walk_levels(levels), STD**2)
    se = expected * np.sqrt(2.0 / n)
    np.testing.assert_allclose(x.var(0), expected, atol=4.5 * se)
    if levels == 10:  # ten levels shrink the variance visibly: the check can tell them apart
        assert (
            abs(expected - respaced_variance(SCHEDULE, SCHEDULE.walk_levels(None), 0.25)) > 10 * se
        )


def test_all_levels_spelled_two_ways_give_the_same_draws():
    model = exact_model("eps", event_shape=(2,))
    key = jax.random.PRNGKey(3)
    np.testing.assert_array_equal(
        model.sample(key, 5),
        model.sample(key, 5, levels=np.arange(SCHEDULE.first_conditioned_level + 1)[::-1]),
    )


class VectorConditioned(nn.Module):
    """eps = x - cond: a network conditioned on a vector."""

    @nn.compact
    def __call__(self, x, t, cond=None):
        scale = self.param("scale", nn.initializers.ones, ())
        return scale * (x - (0.0 if cond is None else cond))


def test_cond_may_be_any_array_the_network_takes():
    net = VectorConditioned()
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 3)), jnp.zeros(1, jnp.int32))
    model = DiffusionModel(net, params, SCHEDULE, "eps", (3,))
    x, c = jnp.array([1.0, 2.0, 3.0]), jnp.array([0.5, 0.5, 4.0])
    np.testing.assert_allclose(model.eps(x, 5, c), x - c)
    np.testing.assert_allclose(jax.vmap(model.eps, (0, None, 0))(x[None], 5, c[None]), [x - c])


def test_class_conditions_and_levels_are_checked():
    net = ResidualMLP(hidden=8, num_blocks=1, num_classes=3)
    params = net.init(
        jax.random.PRNGKey(0), jnp.zeros((1, 2)), jnp.zeros(1, jnp.int32), jnp.zeros(1, jnp.int32)
    )
    model = DiffusionModel(net, params, SCHEDULE, "eps", (2,))
    x = jnp.zeros(2)
    assert model.eps(x, 5, 2).shape == (2,) and model.eps(x, 5, 3).shape == (2,)  # 3: null
    for cond, message in [
        (4, "class 4 is out of range"),
        (-1, "class -1 is out of range"),
        (1.0, "integer class index"),
        (jnp.array([0, 1]), "integer class"),
    ]:
        with pytest.raises(ValueError, match=message):
            model.eps(x, 5, cond)
        with pytest.raises(ValueError, match=message):
            model.sample(jax.random.PRNGKey(0), 2, cond, levels=3)
        with pytest.raises(ValueError, match=message):
            guided(model, cond, 1.0)
    for t in (100, -1):
        with pytest.raises(ValueError, match="out of range"):
            model.eps(x, t)
    with pytest.raises(ValueError, match="out of range"):
        exact_model("energy").energy(jnp.zeros(3), 100)
    jax.jit(model.eps)(x, 5, 1)  # traced values are not checked


def test_models_are_pytrees_whose_leaves_are_the_parameters():
    model = exact_model("eps")
    leaves, treedef = jax.tree.flatten(model)
    assert len(leaves) == len(jax.tree.leaves(model.params))
    doubled = jax.tree.map(lambda p: 2 * p, model)
    assert isinstance(doubled, DiffusionModel) and doubled.schedule == model.schedule
    same = jax.tree.unflatten(treedef, leaves)
    np.testing.assert_allclose(same.eps(jnp.ones(3), 7), model.eps(jnp.ones(3), 7))
    other = exact_model("eps")  # rebuilt: the same structure
    assert jax.tree.structure(other) == treedef
