import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_diffusion.infer.kernels import LevelTarget, get_kernel, uhmc, ula

SD = 0.7
grad = lambda x: -x / SD**2  # noqa: E731
logdensity = lambda x: -0.5 * jnp.sum(x**2) / SD**2  # noqa: E731


def run_chains(init, step, n_chains=4000, n_steps=400, dim=2, key=0):
    keys = jax.random.split(jax.random.PRNGKey(key), n_chains)
    x0 = jnp.zeros((n_chains, dim))
    state = jax.vmap(init)(keys, x0)

    def body(state, i):
        ks = jax.vmap(jax.random.fold_in, (0, None))(keys, i)
        return jax.vmap(step)(ks, state)

    state, infos = jax.jit(lambda s: jax.lax.scan(body, s, jnp.arange(n_steps)))(state)
    return state, infos


def test_ula_has_its_exact_stationary_variance():
    """For N(0, s^2), ULA's stationary variance is s^2 / (1 - h / (2 s^2)) exactly."""
    h = 0.1
    kernel = ula.build_kernel()
    state, infos = run_chains(lambda k, x: ula.init(x, grad), lambda k, s: kernel(k, s, grad, h))
    x = np.asarray(state.position).ravel()
    expected = SD**2 / (1 - h / (2 * SD**2))
    se = np.sqrt(2 * expected**2 / x.size)
    assert abs(x.var() - expected) < 4 * se
    assert abs(x.var() - SD**2) > 4 * se  # the bias is real and resolved
    assert not bool(jnp.any(infos.is_divergent))


def test_uhmc_samples_the_gaussian_with_small_steps():
    kernel = uhmc.build_kernel(num_integration_steps=3, damping=0.5)
    state, _ = run_chains(lambda k, x: uhmc.init(k, x, grad), lambda k, s: kernel(k, s, grad, 0.05))
    x = np.asarray(state.position).ravel()
    se = np.sqrt(2 * SD**4 / x.size)
    assert abs(x.mean()) < 4 * SD / np.sqrt(x.size)
    assert abs(x.var() - SD**2) < 4 * se + 0.005  # leapfrog bias O(h^2) ~ 0.1 %


@pytest.mark.parametrize("name", ["mala", "hmc"])
def test_metropolis_kernels_are_exact(name):
    k = get_kernel(name, num_integration_steps=3, divergence_threshold=1000.0)
    target = LevelTarget(logdensity, grad)
    state, infos = run_chains(
        lambda key, x: k.init(key, x, target, 1.0),
        lambda key, s: k.step(key, s, target, 0.6, 1.0),
    )
    x = np.asarray(k.position(state)).ravel()
    se = np.sqrt(2 * SD**4 / x.size)
    assert abs(x.var() - SD**2) < 4 * se
    assert 0.3 < float(infos.acceptance_rate.mean()) < 1.0


@pytest.mark.parametrize("name", ["ula", "uhmc", "mala", "hmc"])
def test_non_finite_proposals_are_rejected_and_counted(name):
    broken_logdensity = lambda x: jnp.where(x[0] > 0.5, jnp.nan, logdensity(x))  # noqa: E731
    broken_grad = lambda x: jnp.where(x[0] > 0.5, jnp.nan, grad(x))  # noqa: E731
    k = get_kernel(name, num_integration_steps=3, divergence_threshold=1000.0)
    target = LevelTarget(broken_logdensity, broken_grad)
    state, infos = run_chains(
        lambda key, x: k.init(key, x, target, 1.0),
        lambda key, s: k.step(key, s, target, 0.3, 1.0),
        n_chains=200,
        n_steps=50,
    )
    assert bool(jnp.all(jnp.isfinite(k.position(state))))
    assert int(infos.is_divergent.sum()) > 0
    assert float(jnp.max(k.position(state)[:, 0])) <= 0.5


def test_unknown_kernel_lists_the_valid_ones():
    with pytest.raises(ValueError, match="valid kernels are hmc, mala, uhmc, ula"):
        get_kernel("nuts")


@pytest.mark.parametrize("num_points", [2, 3, 4, 5])
def test_line_integral_is_exact_for_polynomials_of_its_degree(num_points):
    """Gauss-Lobatto on n points integrates degree 2n - 3 exactly: log p of degree 2n - 2."""
    from numpyro_diffusion.infer.kernels import line_integral

    degree = 2 * num_points - 2
    coef = np.linspace(0.3, -0.2, 2)

    def log_p(x):
        return coef[0] * jnp.sum(x**degree) + coef[1] * jnp.sum(x) ** 2

    grad_fn = jax.grad(log_p)
    x0, x1 = jnp.array([0.3, -0.4], jnp.float32), jnp.array([-0.5, 0.9], jnp.float32)
    value = line_integral(grad_fn, x0, x1, grad_fn(x0), grad_fn(x1), num_points)
    np.testing.assert_allclose(value, log_p(x1) - log_p(x0), rtol=1e-5, atol=1e-6)
    if num_points > 2:  # and not one degree more

        def higher(x):
            return jnp.sum(x ** (degree + 2))

        g = jax.grad(higher)
        off = line_integral(g, x0, x1, g(x0), g(x1), num_points)
        assert abs(float(off) - float(higher(x1) - higher(x0))) > 1e-4


def test_an_energy_option_is_checked():
    with pytest.raises(ValueError, match="unadjusted"):
        get_kernel("ula", energy="line_integral")
    with pytest.raises(ValueError, match="unknown energy"):
        get_kernel("mala", energy="trapezoid")
    with pytest.raises(ValueError, match="line_integral_points"):
        get_kernel("hmc", energy="line_integral", line_integral_points=1)
    kernel = get_kernel("hmc", energy="line_integral", num_integration_steps=3)
    assert not kernel.needs_energy and kernel.logdensity is None
    assert kernel.gradient_evaluations == 9  # 3 leapfrog steps x 3 gradients (4 points)
