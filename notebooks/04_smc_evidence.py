# %% [markdown]
# # Annealed SMC: mode weights and model evidence
#
# Annealed MCMC walks each chain down the noise levels on its own. Where the modes of the
# prior separate, a chain is committed to one of them, so the posterior's mode weights are
# those the likelihood had at the level where the modes parted, not at `t = 0`.
# `AnnealedSMC` walks the same levels with the same kernel steps, but weights its
# particles by the change of the potential from level to level and resamples them, so
# mass moves between modes after they separate. The weights also estimate the model's
# normaliser, and `log_marginal_likelihood` turns two normalisers into `log p(y)`.
#
# Everything here has a closed form: the prior is the exact diffusion of a Gaussian
# mixture.

# %%
import os
import warnings

import jax
import matplotlib.pyplot as plt
import numpy as np
import numpyro
import numpyro.distributions as dist
from scipy.stats import norm

from numpyro_diffusion import (
    AnnealedMCMC,
    AnnealedSMC,
    GaussianMixtureDiffusion,
    VPSchedule,
    diffusion_prior,
    log_marginal_likelihood,
)

# NUMPYRO_DIFFUSION_SMALL=1 (set by the test suite) shrinks every run.
SMALL = os.environ.get("NUMPYRO_DIFFUSION_SMALL") == "1"
PARTICLES, STEPS = (256, 4) if SMALL else (2048, 10)
warnings.simplefilter("ignore", UserWarning)  # divergences are counted in the summaries

# %% [markdown]
# ## Two separated modes, reweighted by an observation
#
# The prior puts 80 % of its mass near `x = -3` and 20 % near `x = 3`. One noisy
# observation `y = 1` (noise 1.5) favours the right mode enough to make it the posterior's
# main one: the exact posterior weight of the right mode is about 0.73.

# %%
schedule = VPSchedule.cosine(100)
prior = GaussianMixtureDiffusion([[-3.0], [3.0]], [[0.5], [0.5]], [0.8, 0.2], schedule)
NOISE, Y = 1.5, 1.0


def model(y):
    x = diffusion_prior("x", prior)
    numpyro.sample("y", dist.Normal(x[0], NOISE), obs=y)


def exact_posterior(y):
    """Component weights and moments of the posterior: a mixture of two Gaussians."""
    m, v, w = np.array([-3.0, 3.0]), np.array([0.25, 0.25]), np.array([0.8, 0.2])
    evidence = w * norm.pdf(y, m, np.sqrt(v + NOISE**2))
    post_var = 1 / (1 / v + 1 / NOISE**2)
    post_mean = post_var * (m / v + y / NOISE**2)
    return evidence / evidence.sum(), post_mean, post_var, np.log(evidence.sum())


weights, post_mean, post_var, log_evidence = exact_posterior(Y)
print(f"exact weight of the right mode: {weights[1]:.3f}; exact log p(y): {log_evidence:.4f}")

# %%
smc = AnnealedSMC(model, "hmc", PARTICLES, STEPS, progress_bar=False)
smc.run(jax.random.PRNGKey(0), Y)
mcmc = AnnealedMCMC(model, "hmc", PARTICLES, STEPS, progress_bar=False)
mcmc.run(jax.random.PRNGKey(0), Y)
draws = {
    "annealed MCMC (HMC)": np.asarray(mcmc.get_samples()["x"])[:, 0],
    "annealed SMC (HMC)": np.asarray(smc.get_samples()["x"])[:, 0],
}
for name, x in draws.items():
    print(f"{name:>20}: right-mode weight {np.mean(x > 0):.3f}")

# %%
grid = np.linspace(-5, 5, 400)
density = sum(
    w * norm.pdf(grid, m, np.sqrt(v)) for w, m, v in zip(weights, post_mean, post_var, strict=True)
)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), sharey=True)
for ax, (name, x) in zip(axes, draws.items(), strict=True):
    ax.hist(x, bins=80, range=(-5, 5), density=True, alpha=0.6, label=name)
    ax.plot(grid, density, "k", lw=1.2, label="exact posterior")
    ax.set_title(f"{name}: right mode {np.mean(x > 0):.2f} (exact {weights[1]:.2f})")
    ax.set_xlabel("x")
    ax.legend(loc="upper left", fontsize=8)
fig.tight_layout()

# %% [markdown]
# The weights' effective sample size (since the last resampling) falls as the levels
# go down and the likelihood moves weight from the prior's major mode to its minor one,
# which no kernel step can do once the modes have parted. Whether the runs resample
# depends on how far it falls against `ess_threshold`; the weights carry the mass either
# way. `print_summary` shows the levels with the normaliser.

# %%
smc.print_summary(max_levels=8)

# %%
stats = smc.level_stats
fig, ax = plt.subplots(figsize=(6, 3))
levels = np.asarray(stats.level)
ax.plot(levels, np.asarray(stats.weight_ess), label="ESS / particles")
ax.plot(levels, np.asarray(stats.resampled), ".", label="fraction of runs resampled")
ax.axhline(smc.ess_threshold, color="gray", ls=":", lw=1, label="threshold")
ax.set_xlabel("noise level t")
ax.invert_xaxis()
ax.legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## The evidence `log p(y)` against its closed form
#
# `log_marginal_likelihood` runs SMC on the model and on the model without its
# observations over the same levels; the difference is `log p(y)` (a trained energy's
# unknown constants cancel), with a standard error from the independent runs. That
# standard error is itself estimated from `num_runs` values (16 here), so it is uncertain
# by about `1 / sqrt(2 (num_runs - 1))`, a fifth.

# %%
rows = []
for i, y in enumerate([-3.0, 0.0, 1.0, 4.0]):
    value, stderr = log_marginal_likelihood(
        jax.random.PRNGKey(10 + i),
        model,
        y,
        num_particles=PARTICLES,
        num_runs=16,
        steps_per_level=STEPS,
        progress_bar=False,
    )
    exact = exact_posterior(y)[3]
    rows.append((y, exact, value, stderr))
    print(f"y = {y:5.1f}: exact {exact:8.4f}   SMC {value:8.4f} +- {stderr:.4f}")

# %% [markdown]
# A single estimate can land several standard errors out: the weights of the particles
# that end in the minor mode are heavy-tailed, and a run that catches a rare large one
# moves both the estimate and its spread. Pooled over 96 independent runs (256
# particles each, other keys), `y = -3` gave -1.594 +- 0.007 against the exact -1.600,
# and the prior's normaliser alone 0.001 +- 0.002 against 0: the estimator is unbiased;
# more particles or runs narrow it.

# %% [markdown]
# ## Choosing between priors
#
# Evidence compares models: here a second prior, a single broad Gaussian, is asked to
# explain the same observation. The Bayes factor is the difference of the two
# `log p(y)`, each with its standard error.

# %%
broad = GaussianMixtureDiffusion([[0.0]], [[3.0]], schedule=schedule)


def broad_model(y):
    x = diffusion_prior("x", broad)
    numpyro.sample("y", dist.Normal(x[0], NOISE), obs=y)


broad_value, broad_se = log_marginal_likelihood(
    jax.random.PRNGKey(20),
    broad_model,
    Y,
    num_particles=PARTICLES,
    num_runs=16,
    steps_per_level=STEPS,
    progress_bar=False,
)
broad_exact = norm.logpdf(Y, 0.0, np.sqrt(9.0 + NOISE**2))
mix_value, mix_se = rows[2][2], rows[2][3]
print(f"broad prior: exact {broad_exact:.4f}   SMC {broad_value:.4f} +- {broad_se:.4f}")
print(
    f"log Bayes factor (mixture : broad) = {mix_value - broad_value:.3f} "
    f"+- {np.hypot(mix_se, broad_se):.3f}; exact {log_evidence - broad_exact:.3f}"
)
