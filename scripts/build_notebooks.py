"""Write the notebooks in notebooks/ from the cells below and execute them in place.

python scripts/build_notebooks.py            # full settings, outputs stored
python scripts/build_notebooks.py 03_plug_and_play_digits.ipynb   # one notebook
NUMPYRO_DIFFUSION_SMALL=1 python scripts/build_notebooks.py   # quick check
"""

from __future__ import annotations

import os
import sys

import nbformat
from nbclient import NotebookClient

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "notebooks")

SETUP = """\
import os
import warnings

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import numpyro_diffusion as nd
from numpyro_diffusion.infer import AnnealedMCMC
from numpyro_diffusion.metrics import mmd, wasserstein2

# NUMPYRO_DIFFUSION_SMALL=1 (set by the test suite) shrinks every run.
SMALL = os.environ.get("NUMPYRO_DIFFUSION_SMALL") == "1"
CHAINS, LEVELS, STEPS = (200, 20, 4) if SMALL else (1000, 50, 10)
KEY = jax.random.PRNGKey(0)"""

COMPOSITION = [
    (
        "markdown",
        """\
# Composing diffusion models in 2D

Du et al. (*Reduce, Reuse, Recycle*, ICML 2023) show that composing diffusion models by
adding their scores and running reverse diffusion does **not** sample the composed
density: the product of diffused marginals is not the diffusion of the product. MCMC
at every noise level, targeting the composed density at that level, fixes it.

Here each composition is a NumPyro program and each sampler is one `AnnealedMCMC`
call: reverse diffusion (`steps_per_level=0`), the unadjusted ULA and U-HMC, and the
Metropolis-corrected MALA and HMC. The titles give the mean log-likelihood of the
samples under the true composed density; the tables add the MMD and the 2-Wasserstein
distance to exact draws from it (drawn from the density on a fine grid).""",
    ),
    ("code", SETUP),
    (
        "code",
        """\
SAMPLERS = [
    ("reverse diffusion", "ula", 0),
    ("ULA", "ula", STEPS),
    ("U-HMC", "uhmc", STEPS),
    ("MALA", "mala", STEPS),
    ("HMC", "hmc", STEPS),
]


def compare(model, truth, title, lim=1.2):
    \"\"\"Sample `model` with every sampler; plot next to the true density.\"\"\"
    fig, axes = plt.subplots(1, 1 + len(SAMPLERS), figsize=(3 * (1 + len(SAMPLERS)), 3.3),
                             constrained_layout=True)
    extent = (truth.xs[0], truth.xs[-1], truth.xs[0], truth.xs[-1])
    axes[0].imshow(np.exp(truth.log_density).T, origin="lower", extent=extent, cmap="magma")
    axes[0].set_title(f"{title}: truth")
    reference = np.asarray(truth.sample(jax.random.PRNGKey(1), CHAINS))
    n_w2 = min(CHAINS, 1000)
    rows = []
    for ax, (name, kernel, steps) in zip(axes[1:], SAMPLERS):
        sampler = AnnealedMCMC(model, kernel, CHAINS, steps_per_level=steps, levels=LEVELS,
                               progress_bar=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # divergences are reported below
            sampler.run(KEY)
        x = np.asarray(sampler.get_samples()["x"])
        log_lik = float(jnp.mean(truth.log_prob(x)))
        ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.4)
        ax.set_title(f"{name}\\nlog-lik {log_lik:.2f}")
        rows.append((name, log_lik, float(mmd(x, reference)),
                     wasserstein2(x[:n_w2], reference[:n_w2]), sampler.num_divergent))
    for ax in axes:
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal")
    plt.show()
    exact_log_lik = float(jnp.mean(truth.log_prob(reference)))
    print(f"log-lik of exact draws: {exact_log_lik:.3f} (closer is better: an underdispersed")
    print("sampler can score higher); MMD and W2 against exact draws (lower is better)")
    print(f"{'sampler':<18} {'log-lik':>8} {'MMD':>8} {'W2':>7} {'divergences':>12}")
    for name, log_lik, d_mmd, d_w2, div in rows:
        print(f"{name:<18} {log_lik:>8.3f} {d_mmd:>8.4f} {d_w2:>7.3f} {div:>12}")""",
    ),
    (
        "markdown",
        """\
## Product: a ring of Gaussians times a bar

Two energy models trained on Du et al.'s ring (eight Gaussians, radius 0.5, std 0.03)
and bar (|x| <= 0.2, |y| <= 1), shipped with the package. Their product keeps the two
ring modes inside the bar. As a NumPyro program it is a prior and a factor.""",
    ),
    (
        "code",
        """\
from numpyro_diffusion.demo import load_demo_models
from numpyro_diffusion.toy2d import bar, grid_density, ring

ring_model, bar_model = load_demo_models()


def ring_times_bar():
    x = nd.diffusion_prior("x", ring_model)
    nd.diffusion_factor("bar", bar_model, x)


R, B = ring(), bar()
compare(ring_times_bar, grid_density(lambda x: R.log_prob(x) + B.log_prob(x)), "ring x bar")""",
    ),
    (
        "markdown",
        """\
## Mixture: a left and a right bar

`mixture` needs energies (`-logsumexp(-E_i + log w_i)`). A mixture commutes with the
diffusion, so here reverse diffusion is exact too. The models are exact diffusions of
Gaussians (`GaussianMixtureDiffusion`), so the truth is known in closed form.""",
    ),
    (
        "code",
        """\
schedule = nd.VPSchedule.cosine(100)
left = nd.GaussianMixtureDiffusion([[-0.5, 0.0]], [[0.1, 0.5]], schedule=schedule)
right = nd.GaussianMixtureDiffusion([[0.5, 0.0]], [[0.1, 0.5]], schedule=schedule)
both = nd.mixture([left, right], [0.3, 0.7])


def left_or_right():
    nd.diffusion_prior("x", both)


level0 = jax.vmap(lambda x: -both.energy(x, 0))
compare(left_or_right, grid_density(level0), "mixture")""",
    ),
    (
        "markdown",
        """\
## Negation: two blobs, minus the right one

`negation(p, q, alpha)` is `p^(1 + alpha) / q^alpha`, the energy `(1 + alpha) E_p - alpha E_q`.
Reverse diffusion with the combined scores again misses the target.""",
    ),
    (
        "code",
        """\
two_blobs = nd.GaussianMixtureDiffusion([[-0.5, 0.0], [0.5, 0.0]], [[0.2, 0.2], [0.2, 0.2]],
                                        schedule=schedule)
right_blob = nd.GaussianMixtureDiffusion([[0.5, 0.0]], [[0.3, 0.3]], schedule=schedule)
not_right = nd.negation(two_blobs, right_blob, 0.5)


def negated():
    x = nd.diffusion_prior("x", two_blobs)
    # a negation is a prior raised to 1 + alpha and a factor with a negative weight
    nd.diffusion_factor("more", two_blobs, x, weight=0.5)
    nd.diffusion_factor("not_right", right_blob, x, weight=-0.5)


level0 = jax.vmap(lambda x: -not_right.energy(x, 0))
compare(negated, grid_density(level0), "negation")""",
    ),
    (
        "markdown",
        """\
The Metropolis-corrected samplers (MALA, HMC) come closest to the truth on the product
and the negation; reverse diffusion with summed scores is clearly off there and right
only for the mixture, which commutes with the diffusion (its slightly higher
log-likelihood there is the variance shrinkage of 50 DDPM steps, not a better fit).
The unadjusted samplers sit in between: their small default step sizes
(`step_size="sigma"`) keep their bias low but move little.""",
    ),
]

DIAGNOSTICS = [
    (
        "markdown",
        """\
# Reading annealed chains with ArviZ

`AnnealedMCMC.to_arviz()` returns an `InferenceData` with the final-level draws
(`posterior`, `sample_stats` under ArviZ's names) and a `level_stats` group whose `level`
coordinate is the noise level `t`.""",
    ),
    ("code", SETUP),
    (
        "code",
        """\
import arviz as az

from numpyro_diffusion import diagnostics
from numpyro_diffusion.demo import load_demo_models, product_model

ring_model, bar_model = load_demo_models()
sampler = AnnealedMCMC(product_model(ring_model, bar_model), "hmc", CHAINS // 4,
                       steps_per_level=STEPS, levels=LEVELS, num_samples=20,
                       keep_trajectory=True, progress_bar=False)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    sampler.run(KEY)
idata = sampler.to_arviz()
idata""",
    ),
    ("code", "az.summary(idata)"),
    ("code", "sampler.print_summary()"),
    (
        "markdown",
        """\
## Per-level statistics

Each chain adapts its own step size by dual averaging in the first half of every level,
starting from the previous level's; the plot shows the median over chains, the mean
acceptance after adaptation, and the divergent transitions (rejected, never passed on).""",
    ),
    ("code", "diagnostics.plot_level_stats(sampler, title='annealed HMC on ring x bar');"),
    ("code", "idata.level_stats.to_dataframe().head()"),
    ("markdown", "## Sample clouds along the walk"),
    ("code", "diagnostics.plot_sample_clouds(sampler, lim=1.2);"),
    (
        "markdown",
        """\
## Trace and rank plots at the final level

Annealed chains are independent: each settles in one of the two modes by `t = 0`, and
the mode weights come from the annealing. The traces show the chains moving inside
their mode; R-hat above 1 says that chains do not hop between modes at `t = 0`,
which is expected here and is why annealing, not a long chain, samples the product.""",
    ),
    ("code", "diagnostics.plot_trace(idata);"),
    ("code", "diagnostics.plot_rank(idata);"),
]


DIGITS_SETUP = """\
import functools
import inspect
import os
import warnings

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from numpyro_diffusion import digit_experiments as dx
from numpyro_diffusion.digits import load_digit_models, load_digits_data, train_classifier
from numpyro_diffusion.infer import AnnealedMCMC, plug_and_play
from numpyro_diffusion.inpainting import inpainting_model
from numpyro_diffusion.metrics import psnr

# NUMPYRO_DIFFUSION_SMALL=1 (set by the test suite) shrinks every run.
SMALL = os.environ.get("NUMPYRO_DIFFUSION_SMALL") == "1"
PER_CLASS, DRAWS, LEVELS, STEPS, PNP_STEPS = (1, 2, 10, 2, 50) if SMALL else (1, 4, 30, 4, 500)
CFG_PER_CLASS, CFG_LEVELS = (5, 10) if SMALL else (30, 50)
KEY = jax.random.PRNGKey(0)
warnings.filterwarnings("ignore", message=".*divergent transitions.*")

models = load_digit_models()
held = load_digits_data("held_out")


def show(rows, size=0.6):
    \"\"\"A grid of images: one row per entry of ``rows`` (name -> (N, 8, 8, 1)).\"\"\"
    n = min(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(rows), n, figsize=(size * n + 2, 0.7 * len(rows)), squeeze=False)
    for r, (name, images) in enumerate(rows.items()):
        for c in range(n):
            axes[r, c].imshow(np.asarray(images[c])[..., 0], cmap="gray_r", vmin=-1, vmax=1)
            axes[r, c].set_xticks([]); axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    plt.show()


print(models.eps.schedule, models.eps.event_shape, "energy:", models.energy.has_energy)"""

PLUG_AND_PLAY_DIGITS = [
    (
        "markdown",
        """\
# Plug-and-play inference on handwritten digits

Graikos et al. (*Diffusion models as plug-and-play priors*, NeurIPS 2022) use a trained
diffusion model as a prior `p(x)` and a differentiable constraint `c(x, y)`, and look
for `x` with `p(x) c(x, y)` large. Here each problem is a NumPyro program: the prior is
a `diffusion_prior` site, observations are `numpyro.sample(..., obs=...)` and
constraints are `numpyro.factor` statements. The same program runs under three
inference methods:

- **annealed MCMC** (`AnnealedMCMC`): posterior draws, a kernel at every noise level;
- **`plug_and_play`**: Graikos' point estimate, SVI with the denoising loss in place of
  the prior's log-density (needs no energy, so eps models work);
- **reverse diffusion** baselines where one exists (replacement inpainting, guidance).

The data are scikit-learn's bundled 8x8 digits (no download). The shipped models are
class-conditional U-Nets trained with classifier-free dropout (`p_uncond = 0.1`), one
predicting eps and one an energy (`scripts/train_digit_models.py`), and a small MLP
digit classifier.""",
    ),
    ("code", DIGITS_SETUP),
    (
        "code",
        """\
samples = {f"class {d}": models.eps.sample(jax.random.fold_in(KEY, d), 10, cond=d, levels=50)
           for d in range(0, 10, 3)}
show({"held-out": held.images[:10], **samples})""",
    ),
    (
        "markdown",
        """\
## Inpainting

The upper half of a held-out digit is observed with noise 0.05, the lower half is
missing. The model is the prior plus a masked likelihood:""",
    ),
    ("code", "print(inspect.getsource(inpainting_model))"),
    (
        "markdown",
        """\
Annealed HMC on the energy model and ULA on the eps model draw from the posterior (one
image at a time, compiled once, the chains are the draws); `plug_and_play` optimises a
batch of restarts under a plate; replacement reverse diffusion overwrites the known
pixels with noised copies of the observation at every level. PSNR is measured on the
missing pixels.""",
    ),
    (
        "code",
        """\
idx = np.concatenate([np.flatnonzero(held.labels == d)[:PER_CLASS] for d in range(10)])
images, mask = held.images[idx], dx.lower_half_mask()
runs = {
    "annealed HMC (energy)": dx.inpaint_annealed(
        models.energy, KEY, images, mask, kernel="hmc", num_chains=DRAWS, levels=LEVELS,
        steps_per_level=STEPS, progress_bar=False)[0],
    "annealed ULA (eps)": dx.inpaint_annealed(
        models.eps, KEY, images, mask, kernel="ula", num_chains=DRAWS, levels=LEVELS,
        steps_per_level=3 * STEPS, progress_bar=False)[0],
    "plug-and-play (eps)": dx.inpaint_plug_and_play(
        models.eps, KEY, images, mask, num_samples=DRAWS, num_steps=PNP_STEPS),
    "replacement (eps)": dx.inpaint_replacement(models.eps, KEY, images, mask, num_samples=DRAWS),
}
table = pd.DataFrame({
    name: {"PSNR per draw (dB)": dx.inpainting_psnr(x, images, mask).mean(),
           "PSNR of the mean (dB)": psnr(x.mean(1), images, ~mask).mean()}
    for name, x in runs.items()}).T
table""",
    ),
    (
        "code",
        """\
show({"observed": np.where(mask, images, -1.0), "truth": images,
      **{name: x[:, 0] for name, x in runs.items()}})""",
    ),
    (
        "markdown",
        """\
## A classifier constraint

An unconditional prior (the null class of the class-conditional model) times the
classifier's probability of a chosen digit: `numpyro.factor` with the log-probability.
At `t = 0` this is `p(x | y = d)` up to the classifier's errors. Accuracy is judged
by a second classifier trained with another seed, so the sampler cannot simply fool
the classifier it was given.

Annealed MCMC walks through noisy `x`: a classifier trained on clean digits, shown a
level-`t` image, steers the high levels at random, and by the low levels the chains
have committed to a digit. `denoised=True` shows it Tweedie's estimate
`prior.denoise(x, t)` at the chain's level instead (`current_noise_level()` inside the
model), a noise-aware stand-in for `p_t(y | x_t)`. `plug_and_play` optimises a clean
`x` and needs no such care.""",
    ),
    ("code", "print(inspect.getsource(dx.classifier_constraint_model))"),
    (
        "code",
        """\
judge, judge_params = train_classifier(load_digits_data("train"), jax.random.PRNGKey(7))
DIGIT = 3
constraint = functools.partial(dx.classifier_constraint_model, prior=models.eps,
                               classifier=models.classifier,
                               classifier_params=models.classifier_params, digit=DIGIT)
constrained = {}
for name, denoised in [("annealed ULA, factor on x", False),
                       ("annealed ULA, factor on denoised x", True)]:
    sampler = AnnealedMCMC(functools.partial(constraint, denoised=denoised), "ula",
                           num_chains=4 * DRAWS, steps_per_level=3 * STEPS, levels=LEVELS,
                           progress_bar=False)
    sampler.run(jax.random.PRNGKey(1))
    constrained[name] = np.asarray(sampler.get_samples()["x"])
constrained["plug-and-play"] = np.asarray(plug_and_play(
    functools.partial(constraint, num_images=4 * DRAWS), jax.random.PRNGKey(2),
    num_steps=PNP_STEPS).params["x"])
reference = held.images[held.labels == DIGIT]
pd.DataFrame({
    name: {"judge's accuracy": float(np.mean(np.argmax(judge.apply(judge_params, x), -1) == DIGIT)),
           "diversity": dx.diversity(x), "held-out diversity": dx.diversity(reference)}
    for name, x in constrained.items()}).T""",
    ),
    ("code", "show(constrained)"),
    (
        "markdown",
        """\
## A hand-made constraint: mirror symmetry

Graikos et al.'s example of a constraint no classifier gives: `-w ||x - mirror(x)||^2`.
Digits that are nearly symmetric (0, 8, 1) should dominate the draws. Again the annealed
sampler applies it to the denoised estimate.""",
    ),
    ("code", "print(inspect.getsource(dx.symmetry_model))"),
    (
        "code",
        """\
sampler = AnnealedMCMC(functools.partial(dx.symmetry_model, models.eps, denoised=True), "ula",
                       num_chains=4 * DRAWS, steps_per_level=3 * STEPS, levels=LEVELS,
                       progress_bar=False)
sampler.run(jax.random.PRNGKey(3))
symmetric = np.asarray(sampler.get_samples()["x"])
unconstrained = np.asarray(models.eps.sample(jax.random.PRNGKey(4), 4 * DRAWS, levels=50))
print("mean asymmetry ||x - mirror(x)||^2: constrained",
      dx.symmetry_error(symmetric).mean().round(2), "unconstrained",
      dx.symmetry_error(unconstrained).mean().round(2))
print("judge's classes of the symmetric draws:",
      np.bincount(np.argmax(judge.apply(judge_params, symmetric), -1), minlength=10))
show({"symmetric": symmetric, "unconstrained": unconstrained})""",
    ),
    ("code", "sampler.print_summary()"),
    (
        "markdown",
        """\
## The classifier-free guidance trade-off

Ho & Salimans sample `p(x | c)^(1 + w) p(x)^(-w)` (`guided(model, c, w)`): larger `w`
gives sharper, more classifiable but less diverse samples. Their table shows the best
Frechet distance at a small `w` and the Inception Score rising with `w`. Here the
features are the classifier's penultimate layer and the reference is the held-out
split; `benchmarks/digits.py` runs the full table (results in `benchmarks/results/`).""",
    ),
    (
        "code",
        """\
rows = dx.cfg_tradeoff(models, jax.random.PRNGKey(5), held.images,
                       num_per_class=CFG_PER_CLASS, levels=CFG_LEVELS, progress_bar=False)
cfg = pd.DataFrame(rows).set_index("w")
fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3))
cfg["frechet"].plot(ax=a, marker="o", logx=False, title="Frechet distance (lower: closer)")
cfg["classifier_score"].plot(ax=b, marker="o", color="C1", title="classifier score")
a.set_xscale("symlog"); b.set_xscale("symlog")
plt.show()
cfg""",
    ),
]


def build(name: str, cells: list[tuple[str, str]]) -> str:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [
        nbformat.v4.new_markdown_cell(src) if kind == "markdown" else nbformat.v4.new_code_cell(src)
        for kind, src in cells
    ]
    path = os.path.join(OUT, name)
    NotebookClient(
        nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": OUT}}
    ).execute()
    nbformat.write(nb, path)
    return path


NOTEBOOKS = {
    "01_composition_2d.ipynb": COMPOSITION,
    "02_diagnostics.ipynb": DIAGNOSTICS,
    "03_plug_and_play_digits.ipynb": PLUG_AND_PLAY_DIGITS,
}

if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for name in sys.argv[1:] or NOTEBOOKS:  # optionally only the named notebooks
        print("executed", build(name, NOTEBOOKS[name]), file=sys.stderr)
