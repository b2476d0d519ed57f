"""The main job: compose two trained 2D energy models and compare samplers.

A ring of eight Gaussians and a vertical bar (Du et al.) are each a trained energy
diffusion model. Their product is a NumPyro program, a ``diffusion_prior`` and a
``diffusion_factor``. Reverse diffusion with summed scores and annealed MCMC sample
it; the log-likelihood of each sample set under the true product density shows which
one samples the composition.
"""

from __future__ import annotations

import os
import time
import warnings
from importlib import resources
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from numpyro_diffusion import (
    DiffusionModel,
    EnergyNetwork,
    ResidualMLP,
    VPSchedule,
    diffusion_factor,
    diffusion_prior,
    load,
    train,
)
from numpyro_diffusion.infer import AnnealedMCMC
from numpyro_diffusion.tasks.toy2d import Toy2D, bar, grid_density, ring

__all__ = ["load_demo_models", "run_demo", "product_model"]


DEMO_NETWORK = dict(hidden=64, num_blocks=3, time_embed_dim=32)
DEMO_SCHEDULE = dict(num_steps=100)


def train_demo_model(
    toy: Toy2D, rng_key: jax.Array, steps: int = 6000, progress_bar: bool = True
) -> DiffusionModel:
    """The demo's recipe for one 2D energy model (the shipped ring and bar use it with
    keys ``PRNGKey(0)`` and ``PRNGKey(1)``, see ``scripts/train_demo_models.py``)."""
    data_key, train_key = jax.random.split(rng_key)
    return train(
        EnergyNetwork(ResidualMLP(**DEMO_NETWORK), form="dae"),
        toy.sample(data_key, 100_000),
        schedule=VPSchedule.cosine(**DEMO_SCHEDULE),
        parameterization="energy",
        num_steps=steps,
        batch_size=1000,
        optimizer=optax.adam(1e-3),
        rng_key=train_key,
        ema_decay=0.999,
        progress_bar=progress_bar,
    )


def load_demo_models(
    retrain: bool = False, train_steps: int = 6000, progress_bar: bool = True
) -> tuple[DiffusionModel, DiffusionModel]:
    """The ring and bar energy models: the shipped checkpoints, or freshly trained by
    the same recipe (:func:`train_demo_model`)."""
    if retrain:
        ring_model, bar_model = (
            train_demo_model(toy, jax.random.PRNGKey(i), train_steps, progress_bar)
            for i, toy in enumerate((ring(), bar()))
        )
        return ring_model, bar_model
    folder = resources.files("numpyro_diffusion") / "checkpoints"
    with resources.as_file(folder / "ring.npz") as r, resources.as_file(folder / "bar.npz") as b:
        return load(r), load(b)


def product_model(ring_model: Any, bar_model: Any):
    """The NumPyro program of the product ``ring x bar``."""

    def model():
        x = diffusion_prior("x", ring_model)
        diffusion_factor("bar", bar_model, x)

    return model


def _row(name: str, sampler: AnnealedMCMC, seconds: float, truth) -> dict[str, Any]:
    # the last draw of each chain: chains are independent, a chain's draws are not
    x = sampler.get_samples(group_by_chain=True)["x"][:, -1]
    log_lik = np.asarray(truth.log_prob(x))
    row = {
        "method": name,
        "log_lik": float(log_lik.mean()),
        "log_lik_se": float(log_lik.std() / np.sqrt(log_lik.size)),
        "acceptance": float("nan"),
        "divergences": sampler.num_divergent,
        "seconds": seconds,
    }
    if sampler.kernel.adaptable and sampler.steps_per_level > 0:
        row["acceptance"] = float(np.nanmean(np.asarray(sampler.level_stats.acceptance_rate)))
    return row


def format_table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'method':<34} {'log-lik (true)':>14} {'+- s.e.':>8} {'accept':>7} "
        f"{'diverg.':>7} {'time s':>7}"
    )
    lines = [head, "-" * len(head)]

    def fmt(v, spec):
        return "n/a" if isinstance(v, float) and np.isnan(v) else format(v, spec)

    for r in rows:
        lines.append(
            f"{r['method']:<34} {fmt(r['log_lik'], '.3f'):>14} {fmt(r['log_lik_se'], '.3f'):>8} "
            f"{fmt(r['acceptance'], '.2f'):>7} {r['divergences']:>7} {r['seconds']:>7.1f}"
        )
    return "\n".join(lines)


def plot_demo(truth, samples: dict[str, np.ndarray], path: str) -> None:
    from matplotlib.figure import Figure  # no pyplot: leaves the user's backend alone

    fig = Figure(figsize=(4 * (1 + len(samples)), 4), constrained_layout=True)
    axes = fig.subplots(1, 1 + len(samples))
    lim = 1.2
    extent = (truth.xs[0], truth.xs[-1], truth.xs[0], truth.xs[-1])
    axes[0].imshow(np.exp(truth.log_density).T, origin="lower", extent=extent, cmap="magma")
    axes[0].set_title("true product density")
    for ax, (name, x) in zip(axes[1:], samples.items(), strict=True):
        ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.4)
        ax.set_title(name)
    for ax in axes:
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)


def run_demo(
    *,
    chains: int = 1000,
    levels: int = 50,
    steps_per_level: int = 10,
    kernel: str = "hmc",
    seed: int = 0,
    output: str = os.path.join("demo_output", "demo.png"),
    retrain: bool = False,
    train_steps: int = 6000,
    progress_bar: bool = True,
) -> list[dict[str, Any]]:
    """Sample ring x bar by reverse diffusion and by annealed MCMC; print and plot."""
    ring_model, bar_model = load_demo_models(retrain, train_steps, progress_bar)
    model = product_model(ring_model, bar_model)
    R, B = ring(), bar()
    truth = grid_density(lambda x: R.log_prob(x) + B.log_prob(x))
    key = jax.random.PRNGKey(seed)
    runs = [
        (
            "reverse diffusion (sum of scores)",
            AnnealedMCMC(
                model, "ula", chains, steps_per_level=0, levels=levels, progress_bar=progress_bar
            ),
        ),
        (
            f"annealed {kernel.upper()}",
            AnnealedMCMC(
                model,
                kernel,
                chains,
                steps_per_level=steps_per_level,
                levels=levels,
                num_samples=4,
                progress_bar=progress_bar,
            ),
        ),
    ]
    rows, clouds = [], {}
    for name, sampler in runs:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # divergences are in the table
            sampler.run(key)
        jax.block_until_ready(sampler.get_samples())
        rows.append(_row(name, sampler, time.perf_counter() - start, truth))
        x = np.asarray(sampler.get_samples(group_by_chain=True)["x"][:, -1])
        clouds[name] = x
    print(
        f"\nProduct of two trained energy models (ring x bar), {chains} chains, "
        f"{levels} levels, {steps_per_level} {kernel.upper()} steps per level"
    )
    print(format_table(rows))
    reference = float(jnp.mean(truth.log_prob(_true_product_draws(R, B))))
    print(
        f"(log-likelihood of exact draws from the product: {reference:.3f}; higher is better;"
        "\n mean over the chains' last draws, with its standard error over the independent"
        " chains.)"
    )
    plot_demo(truth, clouds, output)
    print(f"wrote {output}")
    return rows


def _true_product_draws(R, B, n: int = 2000) -> jax.Array:
    x = R.sample(jax.random.PRNGKey(123), 40 * n)
    accept = np.asarray(jnp.all(jnp.abs(x) <= jnp.array([0.2, 1.0]), axis=1))
    return x[np.flatnonzero(accept)[:n]]
