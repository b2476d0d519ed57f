"""The per-level move: pure, single-chain, vmappable, with named states and infos."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

from numpyro_diffusion import GaussianMixtureDiffusion, VPSchedule
from numpyro_diffusion.infer import (
    LevelParams,
    MoveInfo,
    MoveSettings,
    MoveState,
    annealed_potential,
    build_move,
    ddpm_predictor,
    get_kernel,
)
from numpyro_diffusion.infer.potential import as_numpyro_model, initialize_potential

S = VPSchedule.cosine(50)
G = GaussianMixtureDiffusion([[0.0, 1.0], [1.0, -1.0]], [[0.3, 0.3], [0.5, 0.2]], schedule=S)


def potential_of(model):
    fn, lead = as_numpyro_model(model)
    family, _ = initialize_potential(jax.random.PRNGKey(0), fn, lead, {})
    return family.at(lead, {})


def level(t, t_prev, step_size=0.1):
    return LevelParams(jnp.asarray(t), jnp.asarray(t_prev), jnp.float32(step_size), jnp.float32(1))


def test_the_predictor_returns_its_proposal_and_log_density():
    z = jnp.array([0.3, -0.2])
    eps = jnp.array([0.5, 0.1])
    mask = jnp.array([True, False])
    z_new, log_q = ddpm_predictor(jax.random.PRNGKey(1), z, 30, 20, eps, S, mask)
    mean, var = S.ddpm_transition(z, eps, 30, 20)
    assert z_new[1] == z[1]  # entries outside the mask stay
    np.testing.assert_allclose(log_q, norm.logpdf(z_new[0], mean[0], jnp.sqrt(var)), rtol=1e-5)


@pytest.mark.parametrize("kernel", ["mala", "hmc", "ula", "uhmc"])
def test_a_step_is_pure_and_vmaps_over_chains(kernel):
    k = get_kernel(kernel)
    settings = MoveSettings(num_steps=4, num_adapt_steps=2 if k.adaptable else 0)
    move = build_move(k, potential_of(G), settings)
    keys = jax.random.split(jax.random.PRNGKey(0), 8)
    z0 = jax.random.normal(jax.random.PRNGKey(1), (8, 2))
    state = jax.vmap(move.init, (0, 0, None))(keys, z0, level(20, 20))
    assert isinstance(state, MoveState) and state.position.shape == (8, 2)
    step = jax.jit(jax.vmap(move.step, (0, 0, None)))
    new, info = step(keys, state, level(10, 20))
    again, info_again = step(keys, state, level(10, 20))
    jax.tree.map(np.testing.assert_array_equal, new.position, again.position)  # idempotent
    assert isinstance(info, MoveInfo)
    assert info.acceptance_rate.shape == info.num_divergent.shape == (8,)
    energies = jax.vmap(lambda z: G.energy(z, 10))(new.position)
    np.testing.assert_allclose(info.potential, energies, rtol=1e-4)
    log_q = np.asarray(info.predictor_log_prob)
    assert np.all(np.isfinite(log_q)) and np.all(log_q != 0)  # the predictor ran


def test_without_kernel_steps_the_move_is_one_ancestral_step():
    move = build_move(get_kernel("ula"), potential_of(G), MoveSettings(num_steps=0))
    z = jnp.array([0.4, 0.1])
    state = move.init(jax.random.PRNGKey(0), z, level(30, 30))
    key = jax.random.PRNGKey(3)
    new, info = move.step(key, state, level(20, 30))
    k_enter = jax.random.split(key)[0]  # step = mutate . enter
    k_pred = jax.random.split(k_enter)[0]
    expected, log_q = ddpm_predictor(k_pred, z, 30, 20, G.eps(z, 30), S, jnp.ones(2, bool))
    np.testing.assert_allclose(new.position, expected, rtol=1e-5)
    np.testing.assert_allclose(info.predictor_log_prob, log_q, rtol=1e-5)
    assert np.isnan(info.potential)  # no energy evaluation for statistics


def test_the_start_of_adaptation_follows_the_rule():
    """'previous': the last level's size shrunk with sigma; 'given': the level's value."""
    pot = potential_of(G)
    for rule in ("previous", "given"):
        settings = MoveSettings(num_steps=2, num_adapt_steps=2, start_rule=rule)
        move = build_move(get_kernel("mala"), pot, settings)
        state = move.init(jax.random.PRNGKey(0), jnp.zeros(2), level(20, 20, 0.1))
        state = state._replace(step_size=jnp.float32(0.8))
        # with a single adaptation step the final size is a deterministic function of
        # the start, so two levels given different values tell the rules apart
        _, a = move.step(jax.random.PRNGKey(1), state, level(10, 20, 0.01))
        _, b = move.step(jax.random.PRNGKey(1), state, level(10, 20, 0.02))
        if rule == "given":
            assert float(a.step_size) != float(b.step_size)
        else:
            assert float(a.step_size) == float(b.step_size)


@pytest.mark.parametrize("kernel", ["hmc", "mala"])
def test_the_move_traces_the_potential_once_per_place_that_needs_it(kernel):
    """Entering the level evaluates the potential once and every kernel step shares one
    scan, adapting or not; the first level's step-size search adds one kernel step and
    starts from the entered state. Each trace is a copy of the network's gradient in
    the compiled program, and compile time grows with the copies."""
    pot = potential_of(G)
    traces = [0]

    def counted(z, t):
        traces[0] += 1
        return pot.potential_fn(z, t)

    counting = pot._replace(potential_fn=counted)

    def count(**settings):
        move = build_move(get_kernel(kernel), counting, MoveSettings(num_steps=4, **settings))
        state = move.init(jax.random.PRNGKey(0), jnp.zeros(2), level(20, 20))
        traces[0] = 0
        jax.make_jaxpr(move.step)(jax.random.PRNGKey(1), state, level(10, 20))
        return traces[0]

    entered_and_steps = count()
    assert entered_and_steps == 2
    assert count(num_adapt_steps=2) == count(num_adapt_steps=4) == entered_and_steps
    assert count(num_adapt_steps=2, search_first_step=True) == entered_and_steps + 1


def test_the_potential_is_the_annealed_potential():
    pot = potential_of(G)
    ref = annealed_potential(G)
    z = jnp.array([0.2, -0.3])
    np.testing.assert_allclose(pot.potential_fn(z, 7), ref.potential_fn(z, 7), rtol=1e-6)
    np.testing.assert_allclose(pot.grad_fn(z, 7), ref.grad_fn(z, 7), rtol=1e-6)


@pytest.mark.parametrize(
    "settings, message",
    [
        (MoveSettings(num_steps=2, predictor="ddim"), "unknown predictor"),
        (MoveSettings(num_steps=2, start_rule="last"), "unknown start_rule"),
        (MoveSettings(num_steps=2, num_adapt_steps=3), "num_adapt_steps"),
    ],
)
def test_bad_move_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        build_move(get_kernel("mala"), potential_of(G), settings)
