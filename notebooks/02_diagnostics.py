# %% [markdown]
# # Reading annealed chains with ArviZ
#
# `AnnealedMCMC.to_arviz()` returns an `InferenceData` with the final-level draws
# (`posterior`, `sample_stats` under ArviZ's names) and a `level_stats` group whose `level`
# coordinate is the noise level `t`.

# %%
import os
import warnings

import jax

from numpyro_diffusion.infer import AnnealedMCMC

# NUMPYRO_DIFFUSION_SMALL=1 (set by the test suite) shrinks every run.
SMALL = os.environ.get("NUMPYRO_DIFFUSION_SMALL") == "1"
CHAINS, LEVELS, STEPS = (200, 20, 4) if SMALL else (1000, 50, 10)
KEY = jax.random.PRNGKey(0)

# %%
import arviz as az

from numpyro_diffusion import diagnostics
from numpyro_diffusion.tasks.demo import load_demo_models, product_model

ring_model, bar_model = load_demo_models()
sampler = AnnealedMCMC(
    product_model(ring_model, bar_model),
    "hmc",
    CHAINS // 4,
    steps_per_level=STEPS,
    levels=LEVELS,
    num_samples=20,
    keep_trajectory=True,
    progress_bar=False,
)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    sampler.run(KEY)
idata = sampler.to_arviz()
idata

# %%
az.summary(idata)

# %%
sampler.print_summary()

# %% [markdown]
# ## Per-level statistics
#
# Each chain adapts its own step size by dual averaging in the first half of every level,
# starting from the previous level's; the plot shows the median over chains, the mean
# acceptance after adaptation, and the divergent transitions (rejected, never passed on).

# %%
fig = diagnostics.plot_level_stats(sampler, title="annealed HMC on ring x bar")
# %%
idata.level_stats.to_dataframe().head()

# %% [markdown]
# ## Sample clouds along the walk

# %%
fig = diagnostics.plot_sample_clouds(sampler, lim=1.2)
# %% [markdown]
# ## Trace and rank plots at the final level
#
# Annealed chains are independent: each settles in one of the two modes by `t = 0`, and
# the mode weights come from the annealing. The traces show the chains moving inside
# their mode; R-hat above 1 says that chains do not hop between modes at `t = 0`,
# which is expected here and is why annealing, not a long chain, samples the product.

# %%
fig = diagnostics.plot_trace(idata)
# %%
fig = diagnostics.plot_rank(idata)
