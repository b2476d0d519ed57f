# %% [markdown]
# # Segmentation with a label-map prior and a Bayesian appearance model
#
# Graikos et al. (section 4) train a diffusion model on one city's land-cover label maps
# and segment another city's aerial images with no labels there: the prior knows what
# maps look like (roads are long thin lines, buildings sit beside them, water and fields
# are smooth patches), and a constraint ties the map to the image. Here the same
# experiment runs on synthetic land cover with a real domain shift: the prior is trained
# on city A's maps only, and the images come from city B, with other class proportions,
# road layouts and colours.
#
# The image model is a NumPyro program: the relaxed label map is a `diffusion_prior`
# site, each image has latent class colours and scales with weak priors (centred on a
# palette the images need not follow), and every pixel is a mixture of the class colour
# distributions. Annealed MCMC gives posterior draws of the map and the colours, so each
# pixel gets a probability of each class, not only a label.

# %%
import inspect
import os

import jax
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from numpyro_diffusion.tasks import segmentation as seg
from numpyro_diffusion.tasks.segmentation.posterior import appearance_model

# NUMPYRO_DIFFUSION_SMALL=1 (set by the test suite) shrinks every run.
SMALL = os.environ.get("NUMPYRO_DIFFUSION_SMALL") == "1"
IMAGES, CHAINS, LEVELS, PNP_STEPS = (2, 2, 6, 10) if SMALL else (8, 16, 50, 300)
KEY = jax.random.PRNGKey(0)
CMAP = plt.matplotlib.colors.ListedColormap(
    ["#2b6cb0", "#7f7f7f", "#c0392b", "#1e6b2e", "#8bc34a", "#d4b46a"]
)


def show_maps(rows, size=1.6):
    """One row per entry: label maps (B, H, W) or images (B, H, W, 3)."""
    n = min(len(v) for v in rows.values())
    fig, axes = plt.subplots(
        len(rows), n, figsize=(size * n + 1.5, size * len(rows)), squeeze=False
    )
    for r, (name, data) in enumerate(rows.items()):
        for c in range(n):
            d = np.asarray(data[c])
            if d.ndim == 3:
                axes[r, c].imshow(d, interpolation="nearest")
            else:
                axes[r, c].imshow(d, cmap=CMAP, vmin=-0.5, vmax=5.5, interpolation="nearest")
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    plt.show()


# %% [markdown]
# ## Two cities
#
# A city is a `City` (a NamedTuple): class proportions, layout parameters and a palette.
# City A is suburban (a dense road grid, many buildings); city B is a rural river town
# (sparse roads at odd angles, fields and water, grey roofs close to the road colour).

# %%
cities = {}
for name, city in seg.CITIES.items():
    maps = seg.generate_maps(jax.random.fold_in(KEY, ord(name)), 400, city)
    share = np.bincount(maps.ravel(), minlength=len(seg.CLASSES)) / maps.size
    cities[f"city {name} (maps)"] = dict(zip(seg.CLASSES, share.round(3), strict=True))
    cities[f"city {name} (nominal)"] = dict(zip(seg.CLASSES, city.proportions, strict=True))
pd.DataFrame(cities).T

# %%
rows = {}
for name, city in seg.CITIES.items():
    maps = seg.generate_maps(jax.random.fold_in(KEY, 10 + ord(name)), 6, city)
    rows[f"{name}: labels"] = maps
    rows[f"{name}: image"] = seg.render(jax.random.fold_in(KEY, 20 + ord(name)), maps, city)
show_maps(rows)

# %% [markdown]
# ## The prior and the model
#
# The shipped prior is a U-Net trained on city A's maps as one-hot channels in [-1, 1]
# (`scripts/train_segmentation_prior.py`). Its draws should look like city A's maps:

# %%
prior = seg.load_segmentation_prior()
draws = prior.sample(jax.random.PRNGKey(1), 6, levels=LEVELS if SMALL else 200)
show_maps({"prior draws": np.asarray(draws).argmax(-1)})

# %%
print(inspect.getsource(appearance_model))

# %% [markdown]
# ## Segmenting city B
#
# The colour priors come from city B's palette with scale 0.05 (each image's colours are
# shifted from it by a few hundredths, and the class colours overlap). The colour-only
# baselines get the same priors: a Gaussian mixture fitted by EM, and the same with Potts
# smoothing (mean field). The annealed posterior runs 16 chains an image, each starting
# with its class colours drawn from their priors, every class nearer its own palette entry
# than any other (`appearance_start="own_cell"`): the chains spread over the colour priors
# and can disagree about a patch between two close classes, but none begins with two
# classes swapped, a mode a chain would keep once the map forms.

# %%
city = seg.CITIES["B"]
k_maps, k_render, k_run = jax.random.split(jax.random.PRNGKey(2), 3)
truth = seg.generate_maps(k_maps, IMAGES, city)
images = seg.render(k_render, truth, city)
results = {
    method: seg.segment(
        k_run,
        images,
        city=city,
        method=method,
        num_samples=CHAINS,
        levels=LEVELS,
        num_steps=PNP_STEPS,
    )
    for method in ("clustering", "potts", "plug_and_play", "annealed")
}
pd.DataFrame(
    [seg.score(name, r.probs, truth, float("nan")) for name, r in results.items()]
).set_index("method")[["accuracy", "miou", "ece"]]

# %%
show_maps({"image": images, "truth": truth, **{name: r.labels for name, r in results.items()}})

# %% [markdown]
# ## Uncertainty
#
# The annealed posterior's per-pixel entropy is high where it errs: class boundaries,
# colours that two classes share. The point estimate's probabilities (the pixel's
# responsibilities at one map and one set of colours) are sure of nearly everything.

# %%
annealed = results["annealed"]
wrong = annealed.labels != truth
fig, axes = plt.subplots(1, 4, figsize=(11, 3))
axes[0].imshow(images[0])
axes[1].imshow(wrong[0], cmap="gray_r")
axes[2].imshow(annealed.entropy[0], cmap="magma", vmin=0, vmax=np.log(6))
axes[3].imshow(results["plug_and_play"].entropy[0], cmap="magma", vmin=0, vmax=np.log(6))
for ax, title in zip(
    axes, ["image", "annealed: errors", "annealed: entropy", "point estimate: entropy"], strict=True
):
    ax.set_title(title, fontsize=9)
    ax.axis("off")
plt.show()
print(
    "mean entropy where wrong / right:",
    annealed.entropy[wrong].mean().round(3),
    annealed.entropy[~wrong].mean().round(3),
)

# %%
fig, ax = plt.subplots(figsize=(4.5, 4.5))
ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1)
for name, r in results.items():
    rel = seg.reliability(r.probs, truth)
    keep = rel.fraction > 0.002
    ece = seg.expected_calibration_error(r.probs, truth)
    ax.plot(rel.confidence[keep], rel.accuracy[keep], marker="o", ms=3, label=f"{name} ({ece:.3f})")
ax.set_xlabel("top-class probability")
ax.set_ylabel("accuracy")
ax.legend(fontsize=8, title="method (ECE)")
plt.show()

# %% [markdown]
# ## What the appearance model adds
#
# Graikos et al.'s constraint variant never models colour: it asks the map to agree with
# a k-means clustering of the image. The appearance model infers each image's class
# colours. Given colour priors from the wrong city (A's palette on B's images), the
# classes whose prior colour is furthest off move toward the image's own colours, and
# those already close stay within a few hundredths of them:

# %%
shifted = seg.segment(
    k_run,
    images[:1],
    city=seg.CITIES["A"],
    method="annealed",
    num_samples=CHAINS,
    levels=LEVELS,
)
pd.DataFrame(
    {
        "prior mean (A's palette)": np.abs(seg.CITIES["A"].palette - city.palette).mean(-1),
        "posterior mean": np.abs(shifted.colours[0] - city.palette).mean(-1),
    },
    index=seg.CLASSES,
).round(3).rename_axis("mean |colour - B's palette|")

# %% [markdown]
# `benchmarks/segmentation.py` runs every method on 32 images of city B, with the
# Hungarian-matched clustering as the colour-only upper bound; its table is in the README.
