# %% [markdown]
# # The travelling salesman with an image-space diffusion prior
#
# Graikos et al. (section 5) train a diffusion model on *pictures* of good tours and use
# it as a prior over a continuous relaxation of the travelling-salesman problem: a
# weighted adjacency matrix `A` is drawn as an image (cities as discs, edges as lines
# whose intensity is their weight), the prior scores that image, and a few hundred
# plug-and-play steps push `A` toward what good tours look like. A greedy decoder turns
# `A` into a tour, and 2-opt polishes it.
#
# This notebook shows the pieces one at a time: instances and LKH-3 reference tours,
# the rendering, the prior, the relaxation as a NumPyro program, plug-and-play on a
# batch of instances in one compiled program, decoding, and the comparison with the
# constructive baselines.

# %%
import inspect
import os

import jax
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import numpyro_diffusion as nd
from numpyro_diffusion.tasks import tsp
from numpyro_diffusion.tasks.tsp.solve import PNP_OPTIMIZER

# NUMPYRO_DIFFUSION_SMALL=1 (set by the test suite) shrinks every run.
SMALL = os.environ.get("NUMPYRO_DIFFUSION_SMALL") == "1"
INSTANCES, PNP_STEPS, RESTARTS = (2, 16, 1) if SMALL else (16, 256, 4)
KEY = jax.random.PRNGKey(0)


def show_images(images, titles, size=2.2):
    """Images ``(B, H, W, 1)`` in [-1, 1] side by side."""
    fig, axes = plt.subplots(1, len(images), figsize=(size * len(images), size), squeeze=False)
    for ax, image, title in zip(axes[0], images, titles, strict=True):
        ax.imshow(np.asarray(image)[..., 0], origin="lower", cmap="gray", vmin=-1, vmax=1)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    plt.show()


def show_tours(coords, tours, titles, size=2.6):
    fig, axes = plt.subplots(1, len(tours), figsize=(size * len(tours), size), squeeze=False)
    for ax, c, tour, title in zip(axes[0], coords, tours, titles, strict=True):
        closed = np.r_[tour, tour[:1]]
        ax.plot(*c[closed].T, "-", lw=1)
        ax.plot(*c.T, "k.", ms=4)
        ax.set(xlim=(0, 1), ylim=(0, 1), aspect="equal", xticks=[], yticks=[])
        ax.set_title(title, fontsize=9)
    plt.show()


# %% [markdown]
# ## Instances and reference tours
#
# Cities are uniform in the unit square. LKH-3 (through `elkai`) gives reference tours,
# near optimal at these sizes; a method's *gap* is its tour length over the reference
# length, minus one.

# %%
coords = tsp.random_instances(jax.random.PRNGKey(2024), INSTANCES, 50)
reference = tsp.reference_tours(coords, runs=3)
reference_lengths = tsp.tour_length(coords, reference)
print(
    f"{coords.shape[0]} instances of {coords.shape[1]} cities; LKH-3 lengths",
    reference_lengths[:4].round(3),
)
show_tours(coords[:3], reference[:3], [f"LKH-3: {x:.3f}" for x in reference_lengths[:3]])

# %% [markdown]
# ## Tours as images
#
# Every city pair `(i, j)` gets a precomputed line image; the image of an adjacency is
# the weighted sum of its edges' lines with the city pixels pinned to 1, so it is linear,
# hence differentiable, in the weights. At 32 x 32 pixels (the size this CPU could train)
# 50 cities sit about 4 pixels apart, so neighbouring lines merge: the main limit of the
# prior shipped here (the paper uses 64 x 64).

# %%
pieces = tsp.edge_images(coords[0], size=32)
print("edge images", pieces.edges.shape, "city discs", pieces.cities.shape)
tour_weights = tsp.tour_adjacency(reference[0], pieces.pairs)
uniform = np.full(len(pieces.pairs), 2.0 / 49)  # each city's unit weight spread evenly
show_images(
    [
        tsp.adjacency_image(tour_weights, pieces),
        tsp.render_tours(coords[:1], reference[:1])[0],
        tsp.adjacency_image(uniform, pieces),
    ],
    ["LKH tour as weights", "render_tours (same)", "uniform adjacency"],
)

# %% [markdown]
# ## The prior
#
# An unconditional U-Net diffusion model of rendered LKH-3 tours of 50 cities (and their
# 8 symmetries), trained by `scripts/train_tsp_prior.py` and shipped with the package.
# Its own draws should look like tours: thin closed paths through bright dots.

# %%
prior = tsp.load_tsp_prior(50)
print(prior.schedule, "image", prior.event_shape)
draws = prior.sample(jax.random.PRNGKey(1), 6, levels=20 if SMALL else 200)
show_images(draws, [f"prior draw {i}" for i in range(6)])

# %% [markdown]
# ## The relaxation as a NumPyro program
#
# The latent is a matrix of logits; each row's softmax (diagonal masked) spreads one
# unit of weight over the other cities. `A + A^T` is drawn as an image and scored by the
# prior through `diffusion_factor`: the same program serves `plug_and_play` (a point
# estimate: the denoising loss over falling noise levels) and annealed MCMC.

# %%
print(inspect.getsource(tsp.relaxation_model))

# %% [markdown]
# Plug-and-play runs every instance (and every restart) of a batch in one compiled
# program: `in_axes` marks which arguments carry the batch axis, as in `jax.vmap`.

# %%
batch = [tsp.edge_images(c, 32) for c in coords[:4]]
edges = np.stack([p.edges for p in batch])
cities = np.stack([p.cities for p in batch])
n = coords.shape[1]
result = nd.plug_and_play(
    tsp.relaxation_model,
    jax.random.PRNGKey(3),
    prior,
    edges,
    cities,
    batch[0].pairs,
    num_steps=PNP_STEPS,
    optimizer=PNP_OPTIMIZER,
    init_values={"logits": 0.01 * jax.random.normal(jax.random.PRNGKey(4), (len(batch), n, n))},
    in_axes=(None, 0, 0, None),
)
a = np.asarray(jax.vmap(tsp.adjacency)(result.params["logits"]))
print("logits", result.params["logits"].shape, "losses", result.losses.shape)
sym = a + np.swapaxes(a, 1, 2)
show_images(
    [
        tsp.adjacency_image(s[p.pairs[:, 0], p.pairs[:, 1]], p)
        for s, p in zip(sym, batch, strict=True)
    ],
    [f"relaxed A, instance {i}" for i in range(len(batch))],
)
fig, ax = plt.subplots(figsize=(5, 2.5))
ax.plot(np.asarray(result.losses).T, lw=0.5)
ax.set(xlabel="step", ylabel="denoising loss", title="plug-and-play, one line per instance")
plt.show()

# %% [markdown]
# ## Decoding
#
# Edges are added greedily by `A_ij / d_ij` whenever they join two different fragments
# (degree at most 2), the cycle is closed, and 2-opt removes crossings. Where the
# relaxation is uninformative, `A` is near uniform and the decoder falls back to greedy
# edge by distance: the prior must beat that to earn its cost.

# %%
decoded = [tsp.greedy_tour(x, c) for x, c in zip(a, coords[:4], strict=True)]
polished = [tsp.two_opt(c, t) for c, t in zip(coords[:4], decoded, strict=True)]
lengths = tsp.tour_length(coords[:4], np.stack(polished))
gaps = tsp.gap(lengths, reference_lengths[:4])
show_tours(coords[:4], polished, [f"prior + 2-opt: gap {100 * g:.1f} %" for g in gaps])

# %% [markdown]
# ## Against the baselines
#
# `solve` wraps all of this (restarts included: each instance keeps its shortest decoded
# tour), and `compare_methods` runs it beside nearest neighbour, farthest insertion,
# greedy edge and random starts, each with and without 2-opt, on the same instances.
# `benchmarks/tsp.py` does the same on 128 TSP-50 and 256 TSP-20 instances; its table is
# in the README.

# %%
rows, solved, improved = tsp.compare_methods(
    jax.random.PRNGKey(5),
    coords,
    prior="shipped",
    num_samples=RESTARTS,
    num_steps=PNP_STEPS,
    lkh_runs=3,
)
table = pd.DataFrame(rows).drop(columns="lengths")
table.assign(gap=100 * table.gap, gap_se=100 * table.gap_se).round(3)

# %% [markdown]
# The prior's relaxation is informative: its decoded tours are shorter than greedy
# edge's before 2-opt, and after 2-opt they beat greedy edge + 2-opt, the best
# construction without a prior (on the benchmark's 128 instances by 0.47 +- 0.22 %,
# paired). At 32 x 32 pixels the lines of neighbouring cities merge, so the image cannot
# tell close alternatives apart, and 2-opt closes most of every construction's gap. The
# prior knows tours of 50 cities: on 20 cities (longer edges than it ever saw) its
# relaxation decodes worse than greedy edge, and a prior per size is needed. The paper's
# 64 x 64 prior resolves close cities; training it needs an accelerator
# (`scripts/train_tsp_prior.py --size 64`).
