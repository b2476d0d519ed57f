# %% [markdown]
# # Plug-and-play inference on handwritten digits
#
# Graikos et al. (*Diffusion models as plug-and-play priors*, NeurIPS 2022) use a trained
# diffusion model as a prior `p(x)` and a differentiable constraint `c(x, y)`, and look
# for `x` with `p(x) c(x, y)` large. Here each problem is a NumPyro program: the prior is
# a `diffusion_prior` site, observations are `numpyro.sample(..., obs=...)` and
# constraints are `numpyro.factor` statements. The same program runs under three
# inference methods:
#
# - **annealed MCMC** (`AnnealedMCMC`): posterior draws, a kernel at every noise level;
# - **`plug_and_play`**: Graikos' point estimate, SVI with the denoising loss in place of
#   the prior's log-density (needs no energy, so eps models work);
# - **reverse diffusion** baselines where one exists (replacement inpainting, guidance).
#
# The data are scikit-learn's bundled 8x8 digits (no download). The shipped models are
# class-conditional U-Nets trained with classifier-free dropout (`p_uncond = 0.1`), one
# predicting eps and one an energy (`scripts/train_digit_models.py`), and a small MLP
# digit classifier.

# %%
import functools
import inspect
import os
import warnings

import jax
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from numpyro_diffusion.infer import AnnealedMCMC, plug_and_play
from numpyro_diffusion.metrics import psnr
from numpyro_diffusion.tasks import digit_experiments as dx
from numpyro_diffusion.tasks.digits import load_digit_judge, load_digit_models, load_digits_data
from numpyro_diffusion.tasks.inpainting import inpainting_model

# NUMPYRO_DIFFUSION_SMALL=1 (set by the test suite) shrinks every run.
SMALL = os.environ.get("NUMPYRO_DIFFUSION_SMALL") == "1"
PER_CLASS, DRAWS, LEVELS, STEPS, PNP_STEPS = (1, 2, 10, 2, 50) if SMALL else (1, 4, 30, 4, 500)
CFG_PER_CLASS, CFG_LEVELS = (5, 10) if SMALL else (30, 50)
KEY = jax.random.PRNGKey(0)
warnings.filterwarnings("ignore", message=".*divergent transitions.*")

models = load_digit_models()
held = load_digits_data("held_out")


def show(rows, size=0.6):
    """A grid of images: one row per entry of ``rows`` (name -> (N, 8, 8, 1))."""
    n = min(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(rows), n, figsize=(size * n + 2, 0.7 * len(rows)), squeeze=False)
    for r, (name, images) in enumerate(rows.items()):
        for c in range(n):
            axes[r, c].imshow(np.asarray(images[c])[..., 0], cmap="gray_r", vmin=-1, vmax=1)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    plt.show()


print(models.eps.schedule, models.eps.event_shape, "energy:", models.energy.has_energy)

# %%
samples = {
    f"class {d}": models.eps.sample(jax.random.fold_in(KEY, d), 10, cond=d, levels=50)
    for d in range(0, 10, 3)
}
show({"held-out": held.images[:10], **samples})

# %% [markdown]
# ## Inpainting
#
# The upper half of a held-out digit is observed with noise 0.05, the lower half is
# missing. The model is the prior plus a masked likelihood:

# %%
print(inspect.getsource(inpainting_model))

# %% [markdown]
# Annealed HMC on the energy model and ULA on the eps model draw from the posterior (one
# image at a time, compiled once, the chains are the draws); `plug_and_play` optimises a
# batch of restarts under a plate; replacement reverse diffusion overwrites the known
# pixels with noised copies of the observation at every level. PSNR is measured on the
# missing pixels.

# %%
idx = np.concatenate([np.flatnonzero(held.labels == d)[:PER_CLASS] for d in range(10)])
images, mask = held.images[idx], dx.lower_half_mask()
runs = {
    "annealed HMC (energy)": dx.inpaint_annealed(
        models.energy,
        KEY,
        images,
        mask,
        kernel="hmc",
        num_chains=DRAWS,
        levels=LEVELS,
        steps_per_level=STEPS,
        progress_bar=False,
    )[0],
    "annealed ULA (eps)": dx.inpaint_annealed(
        models.eps,
        KEY,
        images,
        mask,
        kernel="ula",
        num_chains=DRAWS,
        levels=LEVELS,
        steps_per_level=3 * STEPS,
        progress_bar=False,
    )[0],
    "plug-and-play (eps)": dx.inpaint_plug_and_play(
        models.eps, KEY, images, mask, num_samples=DRAWS, num_steps=PNP_STEPS
    ),
    "replacement (eps)": dx.inpaint_replacement(models.eps, KEY, images, mask, num_samples=DRAWS),
}
table = pd.DataFrame(
    {
        name: {
            "PSNR per draw (dB)": dx.inpainting_psnr(x, images, mask).mean(),
            "PSNR of the mean (dB)": psnr(x.mean(1), images, ~mask).mean(),
        }
        for name, x in runs.items()
    }
).T
table

# %%
show(
    {
        "observed": np.where(mask, images, -1.0),
        "truth": images,
        **{name: x[:, 0] for name, x in runs.items()},
    }
)

# %% [markdown]
# ## A classifier constraint
#
# An unconditional prior (the null class of the class-conditional model) times the
# classifier's probability of a chosen digit: `numpyro.factor` with the log-probability.
# At `t = 0` this is `p(x | y = d)` up to the classifier's errors. Accuracy is judged
# by a second classifier trained with another seed, so the sampler cannot simply fool
# the classifier it was given.
#
# Annealed MCMC walks through noisy `x`: a classifier trained on clean digits, shown a
# level-`t` image, steers the high levels at random, and by the low levels the chains
# have committed to a digit. `denoised=True` shows it Tweedie's estimate
# `prior.denoise(x, t)` at the chain's level instead (`current_noise_level()` inside the
# model), a noise-aware stand-in for `p_t(y | x_t)`. `plug_and_play` optimises a clean
# `x` and needs no such care.

# %%
print(inspect.getsource(dx.classifier_constraint_model))

# %%
judge, judge_params = load_digit_judge()  # an independent classifier (another seed)
DIGIT = 3
constraint = functools.partial(
    dx.classifier_constraint_model,
    prior=models.eps,
    classifier=models.classifier,
    classifier_params=models.classifier_params,
    digit=DIGIT,
)
constrained = {}
for name, denoised in [
    ("annealed ULA, factor on x", False),
    ("annealed ULA, factor on denoised x", True),
]:
    sampler = AnnealedMCMC(
        functools.partial(constraint, denoised=denoised),
        "ula",
        num_chains=4 * DRAWS,
        steps_per_level=3 * STEPS,
        levels=LEVELS,
        progress_bar=False,
    )
    sampler.run(jax.random.PRNGKey(1))
    constrained[name] = np.asarray(sampler.get_samples()["x"])
constrained["plug-and-play"] = np.asarray(
    plug_and_play(
        functools.partial(constraint, num_images=4 * DRAWS),
        jax.random.PRNGKey(2),
        num_steps=PNP_STEPS,
    ).params["x"]
)
reference = held.images[held.labels == DIGIT]
pd.DataFrame(
    {
        name: {
            "judge's accuracy": float(
                np.mean(np.argmax(judge.apply(judge_params, x), -1) == DIGIT)
            ),
            "diversity": dx.diversity(x),
            "held-out diversity": dx.diversity(reference),
        }
        for name, x in constrained.items()
    }
).T

# %%
show(constrained)

# %% [markdown]
# ## A hand-made constraint: mirror symmetry
#
# Graikos et al.'s example of a constraint no classifier gives: `-w ||x - mirror(x)||^2`.
# Digits that are nearly symmetric (0, 8, 1) should dominate the draws. Again the annealed
# sampler applies it to the denoised estimate.

# %%
print(inspect.getsource(dx.symmetry_model))

# %%
sampler = AnnealedMCMC(
    functools.partial(dx.symmetry_model, models.eps, denoised=True),
    "ula",
    num_chains=4 * DRAWS,
    steps_per_level=3 * STEPS,
    levels=LEVELS,
    progress_bar=False,
)
sampler.run(jax.random.PRNGKey(3))
symmetric = np.asarray(sampler.get_samples()["x"])
unconstrained = np.asarray(models.eps.sample(jax.random.PRNGKey(4), 4 * DRAWS, levels=50))
print(
    "mean asymmetry ||x - mirror(x)||^2: constrained",
    dx.symmetry_error(symmetric).mean().round(2),
    "unconstrained",
    dx.symmetry_error(unconstrained).mean().round(2),
)
print(
    "judge's classes of the symmetric draws:",
    np.bincount(np.argmax(judge.apply(judge_params, symmetric), -1), minlength=10),
)
show({"symmetric": symmetric, "unconstrained": unconstrained})

# %%
sampler.print_summary()

# %% [markdown]
# ## The classifier-free guidance trade-off
#
# Ho & Salimans sample `p(x | c)^(1 + w) p(x)^(-w)` (`guided(model, c, w)`): larger `w`
# gives sharper, more classifiable but less diverse samples. Their table shows the best
# Frechet distance at a small `w` and the Inception Score rising with `w`. Here the
# features are the classifier's penultimate layer and the reference is the held-out
# split; `benchmarks/digits.py` runs the full table (results in `benchmarks/results/`).

# %%
rows = dx.cfg_tradeoff(
    models,
    jax.random.PRNGKey(5),
    held.images,
    num_per_class=CFG_PER_CLASS,
    levels=CFG_LEVELS,
    progress_bar=False,
)
cfg = pd.DataFrame(rows).set_index("w")
fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3))
cfg["frechet"].plot(ax=a, marker="o", logx=False, title="Frechet distance (lower: closer)")
cfg["classifier_score"].plot(ax=b, marker="o", color="C1", title="classifier score")
a.set_xscale("symlog")
b.set_xscale("symlog")
plt.show()
cfg
