"""Annealed SMC against closed forms: normalisers, marginal likelihoods, mode weights.

Tolerances come from the sampler's own Monte Carlo error: the spread of its 16
independent runs (a Student t with 15 degrees of freedom: 4.5 standard errors is a
two-sided 0.05 % tail).
"""

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from helpers import ScoreOnly, product_log_normaliser
from scipy.stats import multivariate_normal, norm

from numpyro_diffusion import (
    AnnealedSMC,
    EnergyUnavailableError,
    GaussianMixtureDiffusion,
    VPSchedule,
    diffusion_factor,
    diffusion_prior,
    log_marginal_likelihood,
)
from numpyro_diffusion.infer import AnnealedMCMC

S = VPSchedule.cosine(100)
RUNS = 16
T_TAIL = 4.5
A = GaussianMixtureDiffusion([[-2.0, 0.0], [2.0, 1.0]], [[0.5, 0.5], [0.4, 0.8]], [0.3, 0.7], S)
B = GaussianMixtureDiffusion([[1.5, 0.5], [-1.0, -1.0]], [[0.7, 0.6], [0.5, 0.5]], [0.6, 0.4], S)


def product_model():
    x = diffusion_prior("x", A)
    diffusion_factor("b", B, x)


@pytest.mark.parametrize("kernel, ess_threshold", [("hmc", 1.0), ("mala", 0.5)])
def test_normaliser_of_a_product_of_diffused_mixtures(kernel, ess_threshold):
    """With HMC the particles are resampled at every level (threshold 1)."""
    smc = AnnealedSMC(
        product_model,
        kernel,
        1024,
        10,
        num_runs=RUNS,
        ess_threshold=ess_threshold,
        progress_bar=False,
    )
    smc.run(jax.random.PRNGKey(1))
    if ess_threshold == 1.0:
        np.testing.assert_array_equal(np.asarray(smc.level_stats.resampled), 1.0)
    exact = product_log_normaliser(A, B, 0)
    assert 0 < smc.log_normalizer_stderr < 0.05
    assert abs(smc.log_normalizer - exact) < T_TAIL * smc.log_normalizer_stderr
    stats = smc.level_stats
    assert stats.weight_ess.shape == stats.resampled.shape == stats.level.shape
    assert int(stats.level[-1]) == 0
    np.testing.assert_allclose(np.sum(stats.log_normalizer_increment), smc.log_normalizer, atol=0.1)


OBS_MATRIX = np.array([[1.0, 0.5], [-0.3, 1.0], [0.2, 0.2]])
OBS_NOISE = 0.6


def linear_gaussian(y):
    x = diffusion_prior("x", A)
    numpyro.sample("y", dist.Normal(OBS_MATRIX @ x, OBS_NOISE).to_event(1), obs=y)


def test_log_marginal_likelihood_of_a_linear_gaussian_observation():
    y = np.array([1.2, 0.9, 0.7])
    means, variances = (np.asarray(v, np.float64) for v in A.component_moments(0))
    exact = np.log(
        sum(
            w
            * multivariate_normal.pdf(
                y, OBS_MATRIX @ m, OBS_MATRIX @ np.diag(v) @ OBS_MATRIX.T + OBS_NOISE**2 * np.eye(3)
            )
            for w, m, v in zip(np.asarray(A.weights), means, variances, strict=True)
        )
    )
    value, stderr = log_marginal_likelihood(
        jax.random.PRNGKey(2),
        linear_gaussian,
        y,
        num_particles=1024,
        num_runs=RUNS,
        progress_bar=False,
    )
    assert 0 < stderr < 0.1
    assert abs(value - exact) < T_TAIL * stderr


# Two separated modes, the likelihood moves most of the mass to the prior's minor one.
MODES = GaussianMixtureDiffusion([[-3.0], [3.0]], [[0.5], [0.5]], [0.8, 0.2], S)
Y, NOISE = 1.0, 1.5


def two_modes(y):
    x = diffusion_prior("x", MODES)
    numpyro.sample("y", dist.Normal(x[0], NOISE), obs=y)


def test_smc_moves_mass_between_separated_modes_and_annealed_mcmc_does_not():
    scale = np.sqrt(NOISE**2 + 0.5**2)
    posterior = np.array([0.8, 0.2]) * norm.pdf(Y, [-3.0, 3.0], scale)
    right = posterior[1] / posterior.sum()  # 0.73 against the prior's 0.2
    smc = AnnealedSMC(two_modes, "hmc", 2048, 10, num_runs=RUNS, progress_bar=False)
    smc.run(jax.random.PRNGKey(3), Y)
    # the runs are independent; a run's particles are not (resampling)
    per_run = (np.asarray(smc.get_samples()["x"])[:, 0] > 0).reshape(RUNS, -1).mean(axis=1)
    se = per_run.std(ddof=1) / np.sqrt(RUNS)
    assert abs(per_run.mean() - right) < T_TAIL * se + 1e-3
    mcmc = AnnealedMCMC(two_modes, "hmc", 2048, 10, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(3), Y)
    found = float(np.mean(np.asarray(mcmc.get_samples()["x"])[:, 0] > 0))
    binomial_se = np.sqrt(right * (1 - right) / 2048)
    assert right - found > 10 * binomial_se  # annealed MCMC keeps too much prior weight


def test_results_read_like_annealed_mcmc(capsys):
    smc = AnnealedSMC(
        two_modes, "mala", 64, 2, levels=10, num_runs=4, ess_threshold=0.0, progress_bar=False
    )
    smc.run(jax.random.PRNGKey(0), Y)
    np.testing.assert_array_equal(np.asarray(smc.level_stats.resampled), 0.0)  # never
    assert smc.get_samples()["x"].shape == (64, 1)
    assert smc.get_samples(group_by_chain=True)["x"].shape == (64, 1, 1)
    smc.print_summary()
    out = capsys.readouterr().out
    assert "log Z =" in out and "resampled" in out and "64 particles in 4 independent runs" in out
    idata = smc.to_arviz()
    assert "resampled" in idata.level_stats and "weight_ess" in idata.level_stats
    assert idata.log_likelihood["y"].shape == (64, 1)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="multiple of num_runs"):
        AnnealedSMC(MODES, "hmc", 100, 2, num_runs=8)
    with pytest.raises(ValueError, match="unknown resampling"):
        AnnealedSMC(MODES, "hmc", 64, 2, resampling="best")
    with pytest.raises(ValueError, match="ess_threshold"):
        AnnealedSMC(MODES, "hmc", 64, 2, ess_threshold=1.5)
    with pytest.raises(TypeError, match="num_particles"):
        AnnealedSMC(MODES, "hmc", 64, 2, num_samples=3)
    smc = AnnealedSMC(MODES, "hmc", 64, 2)
    smc.num_samples = 2  # a changed attribute takes effect or raises
    with pytest.raises(ValueError, match="num_samples must be 1"):
        smc.run(jax.random.PRNGKey(0))


def test_score_only_models_are_refused_with_the_samplers_that_work():
    with pytest.raises(EnergyUnavailableError, match="line_integral"):
        AnnealedSMC(ScoreOnly(MODES), "mala", 64, 2)

    def model():
        diffusion_prior("x", ScoreOnly(MODES))

    with pytest.raises(EnergyUnavailableError, match="AnnealedMCMC"):
        AnnealedSMC(model, "ula", 64, 2, step_size=0.01).run(jax.random.PRNGKey(0))
