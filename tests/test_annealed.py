import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from helpers import (
    ScoreOnly,
    assert_moments,
    expected_assignment_masses,
    grid_moments,
    mixture_assignments,
    product_of_mixtures,
    ring_mixture,
    total_variation,
)
from numpyro.infer import MCMC, NUTS, init_to_value

from numpyro_diffusion import (
    EnergyUnavailableError,
    GaussianMixtureDiffusion,
    VPSchedule,
    diffusion_factor,
    diffusion_prior,
    guided,
    noise_level,
)
from numpyro_diffusion.infer import AnnealedMCMC, AnnealedSMC, annealed
from numpyro_diffusion.infer.annealed import clear_compiled_walks

S = VPSchedule.cosine(100)
KEY = jax.random.PRNGKey(0)

# The product task: an 8-Gaussian ring times a two-component "bar"; in closed form.
RING = ring_mixture(S, radius=0.5, std=0.05)
BAR = GaussianMixtureDiffusion([[0.0, 0.4], [0.0, -0.4]], [[0.1, 0.5], [0.1, 0.5]], schedule=S)


def ring_times_bar():
    x = diffusion_prior("x", RING)
    diffusion_factor("bar", BAR, x)


@pytest.fixture(scope="module")
def product_truth():
    exact = product_of_mixtures(RING, BAR, 0)
    return exact, expected_assignment_masses(*exact)


def component_tv(sampler, truth):
    exact, masses = truth
    x = sampler.get_samples()["x"]
    found = np.bincount(mixture_assignments(x, *exact), minlength=len(masses)) / len(x)
    return total_variation(found, masses)


def test_mcmc_samples_the_product_and_reverse_diffusion_does_not(product_truth):
    """Du et al.'s central claim, with no training noise: summed scores are not enough."""
    tv = {}
    for name in ("mala", "hmc"):
        sampler = AnnealedMCMC(
            ring_times_bar, name, num_chains=2000, steps_per_level=20, progress_bar=False
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sampler.run(KEY)
        tv[name] = component_tv(sampler, product_truth)
        assert sampler.num_divergent < 1e-3 * 2000 * 100 * 20  # rare, rejected, counted
    baseline = AnnealedMCMC(
        ring_times_bar, "ula", num_chains=2000, steps_per_level=0, progress_bar=False
    )
    baseline.run(KEY)
    tv["reverse"] = component_tv(baseline, product_truth)
    assert tv["mala"] < 0.05 and tv["hmc"] < 0.05, tv
    assert tv["reverse"] > 0.2, tv


# A single mixture at t = 0, moments known exactly.
SINGLE = GaussianMixtureDiffusion(
    [[0.0, 1.0], [1.0, -1.0]], [[0.2, 0.3], [0.3, 0.2]], weights=[0.4, 0.6], schedule=S
)


def exact_moments(model, t=0):
    mu, var = (np.asarray(v, np.float64) for v in model.component_moments(t))
    w = np.asarray(model.weights, np.float64)
    mean = w @ mu
    second = np.einsum("k,ki,kj->ij", w, mu, mu) + np.diag(w @ var)
    return mean, second - np.outer(mean, mean)


@pytest.mark.parametrize(
    "name, step_size", [("mala", None), ("hmc", None), ("ula", 1e-3), ("uhmc", 2e-3)]
)
def test_each_kernel_recovers_a_mixture(name, step_size):
    sampler = AnnealedMCMC(
        SINGLE, name, num_chains=2000, steps_per_level=10, step_size=step_size, progress_bar=False
    )
    sampler.run(KEY)
    mean, cov = exact_moments(SINGLE)
    assert_moments(sampler.get_samples()["x"], mean, cov)


def test_classifier_free_guidance_samples_the_tilted_density():
    w = 1.0
    model = guided(SINGLE, 0, w)
    mean, cov = grid_moments(jax.vmap(lambda x: -model.energy(x, 0)))
    sampler = AnnealedMCMC(model, "hmc", num_chains=2000, steps_per_level=10, progress_bar=False)
    sampler.run(KEY)
    assert_moments(sampler.get_samples()["x"], mean, cov)


Y = jnp.array([[0.9, -0.7], [1.2, -1.1], [0.8, -1.3], [1.1, -0.9]])


def observed(y):
    x = diffusion_prior("x", SINGLE)
    sigma = numpyro.sample("sigma", dist.HalfNormal(0.5))
    with numpyro.plate("obs", y.shape[0]):
        numpyro.sample("y", dist.Normal(x, sigma).to_event(1), obs=y)


@pytest.fixture(scope="module")
def nuts_reference():
    def at_zero(y):
        with noise_level(0):
            observed(y)

    nuts = MCMC(
        NUTS(at_zero),
        num_warmup=500,
        num_samples=2000,
        num_chains=4,
        chain_method="vectorized",
        progress_bar=False,
    )
    nuts.run(jax.random.PRNGKey(1), Y)
    return nuts.get_samples(group_by_chain=True)


@pytest.mark.parametrize(
    "kernel, steps, max_divergent",
    [("hmc", 10, 10), ("mala", 10, 500), ("ula", 20, 0), ("uhmc", 20, 0)],
)
def test_posterior_with_unknown_noise_matches_nuts(nuts_reference, kernel, steps, max_divergent):
    # sigma's scale is not the diffusion sites' sigma_t: the per-level preconditioner
    # (on by default) moves it at its own scale
    sampler = AnnealedMCMC(
        observed, kernel, num_chains=1000, steps_per_level=steps, num_samples=4, progress_bar=False
    )
    assert sampler.preconditioned
    sampler.run(KEY, Y)
    # of 100 levels x 5 sampling steps x 1000 chains: HMC a handful, MALA under 0.1 %
    assert sampler.num_divergent <= max_divergent
    ours = sampler.get_samples(group_by_chain=True)
    from numpyro.diagnostics import effective_sample_size

    for site in ("x", "sigma"):
        a = np.asarray(ours[site][:, -1]).reshape(1000, -1)  # one draw per independent chain
        b = np.asarray(nuts_reference[site]).reshape(4, 2000, -1)
        ess_b = np.asarray(effective_sample_size(b))
        b = b.reshape(-1, a.shape[1])
        se = np.sqrt(a.var(0) / 1000 + b.var(0) / ess_b)
        np.testing.assert_array_less(np.abs(a.mean(0) - b.mean(0)), 4.5 * se)
        # the standard deviation's standard error is about sd / sqrt(2 n)
        se_sd = b.std(0) * np.sqrt(1 / (2 * 1000) + 1 / (2 * ess_b))
        np.testing.assert_array_less(np.abs(a.std(0) - b.std(0)), 4.5 * se_sd)


def test_without_preconditioning_a_latent_scale_diverges_under_ula():
    sampler = AnnealedMCMC(
        observed, "ula", num_chains=200, steps_per_level=10, precondition=False, progress_bar=False
    )
    with pytest.warns(UserWarning, match="divergent"):
        sampler.run(KEY, Y)
    assert sampler.num_divergent > 1000


def test_beta_rule_refuses_preconditioning():
    with pytest.raises(ValueError, match="precondition=False"):
        AnnealedMCMC(SINGLE, "uhmc", 10, 2, step_size="beta", precondition=True)
    assert not AnnealedMCMC(SINGLE, "uhmc", 10, 2, step_size="beta").preconditioned
    assert not AnnealedMCMC(SINGLE, "ula", 10, 2, step_size=0.01).preconditioned


@pytest.fixture(scope="module")
def small_run():
    sampler = AnnealedMCMC(
        SINGLE,
        "mala",
        num_chains=64,
        steps_per_level=4,
        levels=20,
        num_samples=3,
        progress_bar=False,
    )
    sampler.run(KEY)
    return sampler


def test_same_key_same_result_and_no_recompilation(small_run):
    first = small_run.get_samples()["x"]
    small_run.run(KEY)
    np.testing.assert_array_equal(small_run.get_samples()["x"], first)
    small_run.run(jax.random.PRNGKey(5))
    assert not np.allclose(small_run.get_samples()["x"], first)
    assert small_run.num_traces == 1


def test_shapes_levels_and_stats(small_run):
    assert small_run.get_samples()["x"].shape == (64 * 3, 2)
    assert small_run.get_samples(group_by_chain=True)["x"].shape == (64, 3, 2)
    levels = np.asarray(small_run.level_stats.level)
    # evenly spaced walks start at the highest level with alpha_bar >= 1e-3
    assert levels.shape == (20,) and levels[0] == S.first_conditioned_level == 96
    assert levels[-1] == 0
    assert np.all(np.diff(levels) < 0)
    extra = small_run.get_extra_fields()
    assert extra["acceptance_rate"].shape == (64 * 3,)
    assert np.all(np.isfinite(np.asarray(extra["lp"])))
    assert set(extra["levels"]) >= {"step_size", "acceptance_rate", "num_divergent"}


def test_print_summary_reports_levels_and_divergences(small_run, capsys):
    small_run.print_summary()
    out = capsys.readouterr().out
    # many short chains: no classical R-hat or ESS, said why
    assert "r_hat" not in out and "Per-level statistics" in out
    assert "64 independent chains x 3 draws" in out and "at most about 64" in out
    assert f"Number of divergences: {small_run.num_divergent}" in out


def test_chains_in_blocks_give_the_draws_of_all_at_once():
    runs = {}
    for block in (None, 4):  # 10 chains: two blocks of 4 and a remainder of 2
        sampler = AnnealedMCMC(
            SINGLE,
            "hmc",
            num_chains=10,
            steps_per_level=3,
            levels=6,
            step_size=0.05,
            num_samples=3,
            progress_bar=False,
            chain_block_size=block,
        )
        sampler.run(KEY)
        lp = np.asarray(sampler.get_extra_fields()["lp"])
        runs[block] = (np.asarray(sampler.get_samples()["x"]), sampler.level_stats, lp)
    np.testing.assert_allclose(runs[4][0], runs[None][0], rtol=1e-5, atol=1e-5)
    assert np.all(np.isfinite(runs[4][2]))  # the start, the walk and the final energies
    np.testing.assert_allclose(runs[4][2], runs[None][2], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        runs[4][1].acceptance_rate, runs[None][1].acceptance_rate, rtol=1e-5, atol=1e-6
    )
    with pytest.raises(ValueError, match="preconditioning pools every chain"):
        AnnealedMCMC(SINGLE, "mala", 8, 2, levels=3, chain_block_size=4)
    with pytest.raises(ValueError, match="chain_method='sharded'"):
        AnnealedMCMC(
            SINGLE,
            "ula",
            8,
            2,
            levels=3,
            step_size=0.1,
            chain_method="sharded",
            chain_block_size=4,
        )
    with pytest.raises(ValueError, match="chain_block_size must be"):
        AnnealedMCMC(SINGLE, "ula", 8, 2, levels=3, step_size=0.1, chain_block_size=0)
    with pytest.raises(ValueError, match="AnnealedSMC takes no chain_block_size"):
        AnnealedSMC(SINGLE, "hmc", 8, 2, levels=3, step_size=0.1, chain_block_size=4)
    with pytest.raises(ValueError, match="unknown chain_block_size 'big'"):
        AnnealedMCMC(SINGLE, "ula", 8, 2, levels=3, step_size=0.1, chain_block_size="big")


def test_chain_blocks_by_default_only_on_a_cpu_with_many_unpooled_chains(monkeypatch):
    def block(num_chains, **options):
        options = dict(dict(levels=3, step_size=0.1, progress_bar=False), **options)
        return AnnealedMCMC(SINGLE, "mala", num_chains, 2, **options).settings().chain_block_size

    big = 2 * annealed.CPU_CHAIN_BLOCK
    assert block(big) == annealed.CPU_CHAIN_BLOCK
    assert block(annealed.CPU_CHAIN_BLOCK) is None
    assert block(big, step_size=None) is None  # preconditioning pools the chains
    assert block(big, chain_method="sharded") is None
    assert block(big, chain_block_size=None) is None
    smc = AnnealedSMC(SINGLE, "hmc", big, 2, levels=3, step_size=0.1, progress_bar=False)
    assert smc.settings().walk.chain_block_size is None
    monkeypatch.setattr(annealed.jax, "default_backend", lambda: "gpu")
    assert block(big) is None


@pytest.mark.parametrize("precondition", [False, True])
def test_sharded_equals_vectorized(precondition):
    assert jax.device_count() == 4
    runs = {}
    for method in ("vectorized", "sharded"):
        sampler = AnnealedMCMC(
            SINGLE,
            "hmc",
            num_chains=16,
            steps_per_level=4,
            levels=10,
            chain_method=method,
            progress_bar=False,
            precondition=precondition,
        )
        sampler.run(KEY)
        runs[method] = np.asarray(sampler.get_samples()["x"])
    # The same per-chain keys and arithmetic; only XLA's fusion differs (float rounding).
    # The pooled preconditioner also sums the chains in another order (per device, then
    # across devices): last-bit differences in the mass that 120 leapfrog steps amplify.
    tol = 1e-3 if precondition else 1e-5
    np.testing.assert_allclose(runs["sharded"], runs["vectorized"], rtol=tol, atol=tol)
    with pytest.raises(ValueError, match="divisible by the number of devices"):
        AnnealedMCMC(
            SINGLE,
            "hmc",
            num_chains=6,
            steps_per_level=1,
            levels=3,
            chain_method="sharded",
            progress_bar=False,
        ).run(KEY)


def broken(threshold):
    x = diffusion_prior("x", SINGLE)
    # NaN in value and gradient beyond the threshold, finite before it
    numpyro.factor("broken", jnp.sqrt(threshold - x[0]))


@pytest.mark.parametrize("name", ["mala", "ula"])
def test_a_broken_potential_gives_counted_divergences_not_nan_samples(name):
    sampler = AnnealedMCMC(
        broken,
        name,
        num_chains=64,
        steps_per_level=6,
        levels=20,
        step_size=0.05 if name == "ula" else None,
        progress_bar=False,
    )
    with pytest.warns(UserWarning, match="divergent transitions"):
        sampler.run(KEY, 0.8)
    assert sampler.num_divergent > 0
    assert np.all(np.isfinite(np.asarray(sampler.get_samples()["x"])))


def test_metropolis_kernels_refuse_score_only_models_before_compiling():
    so = ScoreOnly(SINGLE)
    with pytest.raises(EnergyUnavailableError, match="'mala' sampler"):
        AnnealedMCMC(so, "mala", num_chains=2, steps_per_level=1)

    def model():
        diffusion_prior("x", so)

    sampler = AnnealedMCMC(model, "hmc", num_chains=2, steps_per_level=1, progress_bar=False)
    with pytest.raises(EnergyUnavailableError, match="uhmc"):
        sampler.run(KEY)
    assert sampler.num_traces == 0
    ok = AnnealedMCMC(
        model, "ula", num_chains=8, steps_per_level=2, levels=5, step_size=1e-3, progress_bar=False
    )
    ok.run(KEY)
    assert np.all(np.isnan(np.asarray(ok.get_extra_fields()["lp"])))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(kernel="nuts"), "valid kernels are"),
        (dict(kernel="ula", target_accept=0.6), "needs a Metropolis kernel"),
        (dict(steps_per_level=0, predictor=None), "does nothing"),
        (dict(predictor="ddim"), "unknown predictor"),
        (dict(chain_method="parallel"), "unknown chain_method"),
        (dict(num_chains=0), "num_chains must be an integer >= 1"),
        (dict(step_size="tiny"), "unknown step_size"),
        (dict(target_accept=1.5), "target_accept must lie in"),
    ],
)
def test_bad_sampler_arguments(kwargs, message):
    args = dict(model=SINGLE, kernel="mala", num_chains=2, steps_per_level=1) | kwargs
    with pytest.raises(ValueError, match=message):
        AnnealedMCMC(**args)


def ring_and_a_latent():
    diffusion_prior("x", RING)
    numpyro.sample("a", dist.Normal(0.0, 1.0))


@pytest.mark.filterwarnings("ignore:steps_per_level=0 with predictor='ddpm'")
def test_other_sites_start_where_the_init_strategy_says():
    # reverse diffusion moves only the diffusion sites, so "a" ends where it started
    def end_points(strategy):
        sampler = AnnealedMCMC(
            ring_and_a_latent, "ula", 64, 0, levels=5, progress_bar=False, init_strategy=strategy
        )
        sampler.run(KEY)
        return np.asarray(sampler.get_samples()["a"])

    np.testing.assert_allclose(end_points(init_to_value(values={"a": 0.7})), 0.7)
    uniform = end_points(None)  # NumPyro's init_to_uniform: U(-2, 2)
    assert uniform.min() < -1.0 and uniform.max() > 1.0
    with pytest.raises(TypeError, match="initialisation strategy"):
        AnnealedMCMC(SINGLE, "ula", 2, 1, init_strategy="median")


@pytest.mark.parametrize(
    "levels, step_size, message",
    [
        ([50, 60], None, "strictly decreasing"),
        ([150, 0], None, "levels 0 .. 99"),
        (0, None, "must lie in 1 .. 97"),
        (98, None, "must lie in 1 .. 97"),
        ([50, 0], [0.1, 0.2, 0.3], "one per level"),
    ],
)
def test_bad_levels_and_step_sizes(levels, step_size, message):
    sampler = AnnealedMCMC(
        SINGLE,
        "mala",
        num_chains=2,
        steps_per_level=1,
        levels=levels,
        step_size=step_size,
        progress_bar=False,
    )
    with pytest.raises(ValueError, match=message):
        sampler.run(KEY)


def test_results_before_run_are_refused():
    with pytest.raises(RuntimeError, match="call run"):
        AnnealedMCMC(SINGLE, "mala", num_chains=2, steps_per_level=1).get_samples()


def test_a_replaced_or_reloaded_model_reuses_the_compiled_walk(tmp_path):
    sampler = AnnealedMCMC(
        SINGLE, "mala", num_chains=256, steps_per_level=4, levels=20, progress_bar=False
    )
    sampler.run(KEY)
    shifted = GaussianMixtureDiffusion(
        np.asarray(SINGLE.means) + 3.0, SINGLE.stds, SINGLE.weights, schedule=S
    )
    sampler.model = shifted
    sampler.run(KEY)
    assert sampler.num_traces == 1  # the model is data of the program
    mean, _ = exact_moments(shifted)
    assert np.allclose(np.asarray(sampler.get_samples()["x"]).mean(0), mean, atol=0.2)

    from numpyro_diffusion import DiffusionModel, EnergyNetwork, ResidualMLP, load, save

    net = EnergyNetwork(ResidualMLP(hidden=16, num_blocks=1, zero_init_output=False))
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 2)), jnp.zeros(1, jnp.int32))
    save(tmp_path / "m.npz", DiffusionModel(net, params, S, "energy", (2,)))
    retrained = jax.tree.map(lambda p: 1.1 * p, params)
    save(tmp_path / "r.npz", DiffusionModel(net, retrained, S, "energy", (2,)))

    def program(prior):
        diffusion_prior("x", prior)

    runs = AnnealedMCMC(
        program, "hmc", num_chains=8, steps_per_level=2, levels=5, progress_bar=False
    )
    first = runs.run(KEY, load(tmp_path / "m.npz")) or np.asarray(runs.get_samples()["x"])
    runs.run(KEY, load(tmp_path / "r.npz"))
    assert runs.num_traces == 1
    assert not np.allclose(np.asarray(runs.get_samples()["x"]), first)


def test_changed_attributes_take_effect_or_raise():
    sampler = AnnealedMCMC(
        SINGLE, "mala", num_chains=8, steps_per_level=2, levels=5, progress_bar=False
    )
    sampler.run(KEY)
    sampler.num_samples = 3
    sampler.run(KEY)
    assert sampler.get_samples(group_by_chain=True)["x"].shape == (8, 3, 2)
    sampler.kernel = "ula"
    sampler.run(KEY)
    assert sampler.settings().kernel == "ula"
    assert "acceptance_rate" not in sampler.to_arviz().sample_stats
    sampler.target_accept = 1.5
    with pytest.raises(ValueError, match="target_accept must lie in"):
        sampler.run(KEY)
    with pytest.raises(ValueError, match="unknown kernel"):
        sampler.kernel = "nuts"


def test_every_walk_ends_at_zero_and_starts_where_the_data_are_visible():
    one = AnnealedMCMC(
        SINGLE, "mala", num_chains=4, steps_per_level=1, levels=1, progress_bar=False
    )
    one.run(KEY)
    np.testing.assert_array_equal(one.level_stats.level, [0])
    every = AnnealedMCMC(SINGLE, "ula", num_chains=4, steps_per_level=0, progress_bar=False)
    every.run(KEY)
    levels = np.asarray(every.level_stats.level)
    assert levels[0] == S.first_conditioned_level and levels[-1] == 0 and levels.size == 97
    # reverse diffusion spends no energy evaluation on statistics
    assert np.all(np.isnan(np.asarray(every.level_stats.mean_potential)))


def test_divergences_are_counted_once():
    for num_samples in (1, 3):
        sampler = AnnealedMCMC(
            broken,
            "ula",
            num_chains=64,
            steps_per_level=6,
            levels=20,
            step_size=0.05,
            num_samples=num_samples,
            progress_bar=False,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sampler.run(KEY, 0.8)
        per_level = int(np.sum(sampler.level_stats.num_divergent))
        further = int(np.sum(np.asarray(sampler.draw_stats.diverging)[:, 1:]))
        assert per_level > 0
        assert sampler.num_divergent == per_level + further


def sharp():
    x = diffusion_prior("x", SINGLE)
    numpyro.factor("sharp", -500.0 * jnp.sum(x**2))


def test_mala_applies_the_divergence_threshold_to_its_energy_error():
    counts = {}
    for threshold in (50.0, 1e9):
        sampler = AnnealedMCMC(
            sharp,
            "mala",
            num_chains=32,
            steps_per_level=4,
            levels=5,
            step_size=0.05,
            divergence_threshold=threshold,
            progress_bar=False,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sampler.run(KEY)
        counts[threshold] = sampler.num_divergent
        assert np.all(np.isfinite(np.asarray(sampler.get_samples()["x"])))
    # proposals overshoot by ~500 * (2 * 0.05 * 1000)^2 nats: rejected either way, but
    # only a threshold below that calls them divergent
    assert counts[50.0] > 0 and counts[1e9] == 0, counts


def test_adaptation_starts_each_level_from_a_given_rule():
    sampler = AnnealedMCMC(
        SINGLE,
        "hmc",
        num_chains=16,
        steps_per_level=2,
        levels=10,
        step_size="sigma",
        target_accept=0.65,
        progress_bar=False,
    )
    assert sampler.settings().move.start_rule == "given"
    params = sampler.level_params(S)
    expected, _ = sampler.kernel.rule_step_sizes(
        "sigma", S, np.asarray(params.t), preconditioned=True
    )
    np.testing.assert_allclose(params.step_size, expected)
    np.testing.assert_allclose(expected, sampler.kernel.standard_step_size)  # scale-free
    sampler.precondition = False
    expected, _ = sampler.kernel.rule_step_sizes("sigma", S, np.asarray(params.t))
    np.testing.assert_allclose(sampler.level_params(S).step_size, expected)  # sigma_t-scaled
    assert expected[0] > 10 * expected[-1]
    scalar = AnnealedMCMC(
        SINGLE, "hmc", num_chains=16, steps_per_level=2, step_size=0.1, target_accept=0.65
    )
    assert scalar.settings().move.start_rule == "previous"  # a float starts the first level


def test_observed_nan_and_bad_classes_are_named_before_sampling():
    def model(y):
        x = diffusion_prior("x", SINGLE)
        numpyro.sample("y", dist.Normal(x, 0.1).to_event(1), obs=y)

    sampler = AnnealedMCMC(model, "hmc", num_chains=2, steps_per_level=1, progress_bar=False)
    with pytest.raises(ValueError, match="observed site 'y' has 1 NaN"):
        sampler.run(KEY, jnp.array([0.1, jnp.nan]))
    for cond, message in [(5, "out of range"), (-1, "out of range"), (0.5, "integer")]:
        with pytest.raises(ValueError, match=message):
            AnnealedMCMC(
                lambda c=cond: diffusion_prior("x", SINGLE, cond=c),
                "hmc",
                num_chains=2,
                steps_per_level=1,
                progress_bar=False,
            ).run(KEY)


def test_sampler_objects_share_compiled_walks_and_say_when_they_compile(capsys):
    clear_compiled_walks()

    def build():
        return AnnealedMCMC(SINGLE, "ula", num_chains=8, steps_per_level=2, levels=5)

    first = build()
    first.run(KEY)
    assert first.num_traces == 1
    assert "compiling the annealed ula walk (5 levels, 8 chains)" in capsys.readouterr().err
    second = build()  # a new object, same model, settings and shapes
    second.run(jax.random.PRNGKey(3))
    assert second.num_traces == 0
    assert "compiling" not in capsys.readouterr().err


THREE = GaussianMixtureDiffusion(
    [[-2.0, 0.0], [0.0, 2.0], [2.0, 0.0]], np.full((3, 2), 0.4), weights=[0.5, 0.3, 0.2], schedule=S
)


def linear_gaussian(y, noise):
    x = diffusion_prior("x", THREE)
    numpyro.sample("y", dist.Normal(x, noise).to_event(1), obs=y)


def exact_linear_gaussian_posterior(y, noise):
    means, var0 = np.asarray(THREE.means), np.asarray(THREE.stds) ** 2
    var = var0 + noise**2
    log_w = np.log(THREE.weights) - 0.5 * np.sum((y - means) ** 2 / var + np.log(var), 1)
    post_var = 1 / (1 / var0 + 1 / noise**2)
    return np.exp(log_w - np.logaddexp.reduce(log_w)), post_var * (means / var0 + y / noise**2)


def reverse_diffusion(predictor, y, noise):
    sampler = AnnealedMCMC(
        linear_gaussian, "ula", 4000, steps_per_level=0, predictor=predictor, progress_bar=False
    )
    sampler.run(KEY, jnp.asarray(y), noise)
    return sampler, np.asarray(sampler.get_samples()["x"])


def test_reverse_diffusion_says_it_ignores_the_observations():
    y = np.array([1.5, 0.8])
    with pytest.warns(UserWarning, match=r"sites \['y'\] .* are ignored"):
        _, x = reverse_diffusion("ddpm", y, 0.5)
    weights, means = exact_linear_gaussian_posterior(y, 0.5)
    found = np.bincount(np.argmin(((x[:, None] - np.asarray(THREE.means)) ** 2).sum(-1), 1)) / 4000
    assert total_variation(found, THREE.weights) < 0.05  # the prior's weights, not the posterior's


@pytest.mark.parametrize("noise", [0.5, 0.05])
def test_guided_reverse_diffusion_lands_near_the_posterior(noise):
    """Close to the posterior, not exact: no kernel step corrects the guided proposals."""
    y = np.array([1.5, 0.8])
    weights, means = exact_linear_gaussian_posterior(y, noise)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning, no divergence
        sampler, x = reverse_diffusion("guided", y, noise)
    assert sampler.num_divergent == 0
    post_mean = weights @ means
    assert np.max(np.abs(x - post_mean)) < 2.5  # nothing explodes with a sharp likelihood
    np.testing.assert_allclose(x.mean(0), post_mean, atol=0.15)
    if noise == 0.5:  # the components are apart: compare their weights
        nearest = np.argmin(((x[:, None] - means) ** 2).sum(-1), 1)
        assert total_variation(np.bincount(nearest, minlength=3) / len(x), weights) < 0.1


MIXTURE = GaussianMixtureDiffusion(
    [[-2.0, 0.0], [2.0, 1.0]], [[0.5, 0.5], [0.4, 0.8]], [0.3, 0.7], S
)


def mixture_moments(model):
    means, variances = (np.asarray(v, np.float64) for v in model.component_moments(0))
    w = np.asarray(model.weights, np.float64)
    mean = w @ means
    second = np.einsum("k,ki,kj->ij", w, means, means) + np.diag(w @ variances)
    return mean, second - np.outer(mean, mean)


@pytest.mark.parametrize("kernel", ["mala", "hmc"])
def test_line_integral_corrects_a_score_only_model(kernel):
    """The exact mixture seen only through its score, Metropolis-corrected by line
    integrals: its exact moments, and the acceptance of the exact-energy kernel."""
    runs = {}
    for name, model, energy in (
        ("exact", MIXTURE, None),
        ("line", ScoreOnly(MIXTURE), "line_integral"),
    ):
        sampler = AnnealedMCMC(
            model, kernel, 1024, 10, levels=40, energy=energy, progress_bar=False
        )
        sampler.run(jax.random.PRNGKey(5))
        runs[name] = sampler
    line = runs["line"]
    assert_moments(line.get_samples()["x"], *mixture_moments(MIXTURE))
    exact_accept = float(np.nanmean(runs["exact"].level_stats.acceptance_rate))
    line_accept = float(np.nanmean(line.level_stats.acceptance_rate))
    assert abs(line_accept - exact_accept) < 0.02
    assert np.all(np.isnan(np.asarray(line.level_stats.mean_potential)))  # no energy used
    with pytest.raises(EnergyUnavailableError, match="line_integral"):
        AnnealedMCMC(ScoreOnly(MIXTURE), kernel, 16, 2)


ASYMMETRIC_MODES = GaussianMixtureDiffusion([[-3.0], [3.0]], [[0.5], [0.5]], [0.8, 0.2], S)


def test_nested_rhat_flags_a_walk_that_remembers_its_start(capsys):
    """64 superchains of 16 chains sharing a start: one ULA step per level leaves them
    alike (and the draws biased toward the start); ten forget the start."""
    flagged = {}
    for steps in (1, 10):
        sampler = AnnealedMCMC(
            ASYMMETRIC_MODES,
            "ula",
            1024,
            steps,
            levels=20,
            predictor=None,
            superchain_size=16,
            progress_bar=False,
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sampler.run(KEY)
        warned = any("does not forget its start" in str(w.message) for w in caught)
        flagged[steps] = bool(np.any(sampler.nested_rhat()["x"].flagged))
        assert warned == flagged[steps]
        if steps == 1:
            sampler.print_summary()
            assert "FLAGGED" in capsys.readouterr().out
    assert flagged == {1: True, 10: False}
    with pytest.raises(ValueError, match="superchain_size"):
        AnnealedMCMC(ASYMMETRIC_MODES, "ula", 100, 1, superchain_size=16)
    plain = AnnealedMCMC(ASYMMETRIC_MODES, "ula", 64, 1, levels=5, progress_bar=False)
    plain.run(KEY)
    with pytest.raises(RuntimeError, match="superchain_size > 1"):
        plain.nested_rhat()
