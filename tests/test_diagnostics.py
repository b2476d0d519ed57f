import arviz as az
import jax
import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import jax.numpy as jnp  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from numpyro_diffusion import GaussianMixtureDiffusion, VPSchedule, diffusion_prior  # noqa: E402
from numpyro_diffusion import diagnostics as dg  # noqa: E402
from numpyro_diffusion.infer import AnnealedMCMC  # noqa: E402

S = VPSchedule.cosine(100)
G = GaussianMixtureDiffusion([[0.0, 1.0], [1.0, -1.0]], [[0.2, 0.3], [0.3, 0.2]], schedule=S)


@pytest.fixture(scope="module")
def hmc_run():
    sampler = AnnealedMCMC(
        G,
        "hmc",
        num_chains=16,
        steps_per_level=6,
        levels=25,
        num_samples=8,
        keep_trajectory=True,
        progress_bar=False,
    )
    sampler.run(jax.random.PRNGKey(0))
    return sampler


def test_inference_data_groups_names_and_dims(hmc_run):
    idata = dg.to_arviz(hmc_run)
    assert {"posterior", "sample_stats", "level_stats"} <= set(idata.groups())
    assert idata.posterior["x"].dims[:2] == ("chain", "draw")
    assert idata.posterior["x"].shape == (16, 8, 2)
    for name in ("acceptance_rate", "step_size", "diverging", "lp", "n_steps"):
        assert idata.sample_stats[name].shape == (16, 8), name
    levels = idata.level_stats["level"].values
    np.testing.assert_array_equal(levels, np.asarray(hmc_run.level_stats.level))
    assert levels[0] == 96 and levels[-1] == 0  # the first conditioned level
    assert idata.level_stats["acceptance_rate"].dims == ("level",)
    assert hmc_run.to_arviz().posterior["x"].shape == (16, 8, 2)


def test_arviz_functions_work(hmc_run):
    idata = hmc_run.to_arviz()
    summary = az.summary(idata)
    assert list(summary.index) == ["x[0]", "x[1]"]
    assert np.all(np.isfinite(az.rhat(idata)["x"].values))
    assert np.all(az.ess(idata)["x"].values > 0)
    assert isinstance(dg.plot_trace(idata), Figure)
    assert isinstance(dg.plot_rank(idata), Figure)


def test_level_and_cloud_plots(hmc_run, tmp_path):
    fig = dg.plot_level_stats(hmc_run, title="HMC")
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    fig.savefig(tmp_path / "levels.png")
    fig = dg.plot_sample_clouds(hmc_run, levels=[96, 0])
    assert len(fig.axes) == 2
    levels, values = hmc_run.get_trajectory("x")
    assert values.shape == (25, 16, 2)
    with pytest.raises(ValueError, match="was not walked"):
        dg.plot_sample_clouds(hmc_run, levels=[98])


def test_unadjusted_runs_omit_acceptance_and_trajectory_is_opt_in():
    sampler = AnnealedMCMC(
        G,
        "ula",
        num_chains=8,
        steps_per_level=2,
        levels=10,
        num_samples=4,
        step_size=1e-3,
        progress_bar=False,
    )
    sampler.run(jax.random.PRNGKey(1))
    stats = sampler.to_arviz().sample_stats
    assert "acceptance_rate" not in stats and "lp" in stats
    np.testing.assert_array_equal(stats["n_steps"], 1)  # one gradient step per transition
    with pytest.raises(RuntimeError, match="keep_trajectory=True"):
        sampler.get_trajectory("x")


Y = jnp.array([[0.9, -0.7], [1.2, -1.1], [0.8, -1.3]])


def observed(y):
    x = diffusion_prior("x", G)
    sigma = numpyro.sample("sigma", dist.HalfNormal(0.5))
    with numpyro.plate("obs", y.shape[0]):
        numpyro.sample("y", dist.Normal(x, sigma).to_event(1), obs=y)


def test_arviz_as_a_user_would_summary_bfmi_loo_and_netcdf(tmp_path):
    sampler = AnnealedMCMC(
        observed,
        "hmc",
        num_chains=200,
        steps_per_level=6,
        levels=25,
        num_samples=4,
        progress_bar=False,
    )
    sampler.run(jax.random.PRNGKey(0), Y)
    sampler.kernel = "mala"  # the conversion describes the run, not the current attribute
    idata = sampler.to_arviz(dims={"x": ["coordinate"]}, coords={"coordinate": ["u", "v"]})
    assert {"posterior", "sample_stats", "log_likelihood", "observed_data"} <= set(idata.groups())
    assert list(idata.posterior["x"].coords["coordinate"].values) == ["u", "v"]
    summary = az.summary(idata)
    assert {"x[u]", "x[v]", "sigma"} <= set(summary.index)
    # the Hamiltonian of each draw: BFMI per chain
    assert idata.sample_stats["energy"].shape == (200, 4)
    assert np.all(np.isfinite(az.bfmi(idata)))
    # pointwise log-likelihood of the three observations at t = 0
    ll = idata.log_likelihood["y"]
    assert ll.shape == (200, 4, 3)
    x, sigma = idata.posterior["x"].values[0, 0], float(idata.posterior["sigma"].values[0, 0])
    expected = dist.Normal(x, sigma).to_event(1).log_prob(Y)
    np.testing.assert_allclose(ll.values[0, 0], expected, rtol=1e-5)
    np.testing.assert_allclose(idata.observed_data["y"].values, Y)
    loo = az.loo(idata)
    assert np.isfinite(loo.elpd_loo)
    path = tmp_path / "run.nc"
    idata.to_netcdf(str(path))
    back = az.from_netcdf(str(path))
    np.testing.assert_allclose(back.posterior["sigma"].values, idata.posterior["sigma"].values)
    np.testing.assert_allclose(back.log_likelihood["y"].values, ll.values)
    np.testing.assert_array_equal(back.level_stats["level"].values, sampler.level_stats.level)


def test_kernels_without_a_hamiltonian_report_no_energy(hmc_run):
    sampler = AnnealedMCMC(
        G, "mala", num_chains=8, steps_per_level=2, levels=5, num_samples=2, progress_bar=False
    )
    sampler.run(jax.random.PRNGKey(0))
    assert "energy" not in sampler.to_arviz().sample_stats
    assert "log_likelihood" not in sampler.to_arviz().groups()  # no observations
    assert "energy" in hmc_run.to_arviz().sample_stats


def test_nested_rhat_of_independent_and_of_shared_draws():
    from numpyro_diffusion.diagnostics import nested_rhat

    rng = np.random.default_rng(0)
    independent = nested_rhat(rng.standard_normal((64 * 16, 3)), 16)
    assert independent.rhat.shape == (3,)
    assert np.all(np.abs(independent.excess_z) < 4) and not np.any(independent.flagged)
    np.testing.assert_allclose(independent.rhat, np.sqrt(1 + 1 / 16), atol=0.02)
    starts = np.repeat(rng.standard_normal((64, 3)), 16, axis=0)  # chains kept their start
    shared = nested_rhat(starts + 0.3 * rng.standard_normal(starts.shape), 16)
    assert np.all(shared.flagged) and np.all(shared.rhat > 1.5)
    with pytest.raises(ValueError, match="at least 2 superchains"):
        nested_rhat(np.zeros((16, 1)), 16)
