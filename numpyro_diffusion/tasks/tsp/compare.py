"""Every method on the same instances: gaps to a reference, seconds per instance."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from jax import Array

from numpyro_diffusion.metrics import mean_and_standard_error
from numpyro_diffusion.tasks.tsp.baselines import BASELINES
from numpyro_diffusion.tasks.tsp.decode import two_opt
from numpyro_diffusion.tasks.tsp.instances import gap, reference_tours, tour_length
from numpyro_diffusion.tasks.tsp.render import adjacency_image, edge_images
from numpyro_diffusion.tasks.tsp.solve import TSPResult, solve

__all__ = [
    "compare_methods",
    "format_table",
    "paired_difference",
    "plot_solution",
    "prior_label",
]


def prior_label(num_samples: int) -> str:
    """The method name of the image prior's rows (``+ " + 2-opt"`` for the improved ones)."""
    return f"image prior (plug-and-play x{num_samples})"


def _row(name: str, coords, tours, reference, seconds: float) -> dict:
    lengths = tour_length(coords, tours)
    gaps = gap(lengths, reference) if reference is not None else np.full(len(lengths), np.nan)
    gap_mean, gap_se = mean_and_standard_error(gaps)
    return dict(
        method=name,
        gap=gap_mean,
        gap_se=gap_se,
        length=float(lengths.mean()),
        seconds=seconds,
        lengths=[float(x) for x in lengths],
    )


def _with_two_opt(name, coords, tours, reference, seconds, rows):
    rows.append(_row(name, coords, tours, reference, seconds))
    start = time.perf_counter()
    improved = np.stack([two_opt(c, t) for c, t in zip(coords, tours, strict=True)])
    total = seconds + (time.perf_counter() - start) / len(coords)
    rows.append(_row(f"{name} + 2-opt", coords, improved, reference, total))
    return improved


def compare_methods(
    rng_key: Array,
    coords: np.ndarray,
    *,
    prior: Any = None,
    num_samples: int = 1,
    num_steps: int = 256,
    lkh_runs: int | None = 10,
    prior_cities: int = 50,
    progress_bar: bool = False,
) -> tuple[list[dict], TSPResult | None, np.ndarray | None]:
    """Rows (method, mean gap to LKH-3 and its standard error, mean length, seconds per
    instance) for LKH-3 (``lkh_runs=None``: no reference, gaps NaN), every baseline and,
    with a ``prior`` (or ``prior="shipped"``), the image prior by plug-and-play; each
    with and without 2-opt. Also returns the prior's result and its 2-opt tours."""
    rows: list[dict] = []
    reference = None
    if lkh_runs is not None:
        start = time.perf_counter()
        reference = tour_length(coords, reference_tours(coords, runs=lkh_runs))
        rows.append(
            dict(
                method="LKH-3",
                gap=0.0,
                gap_se=0.0,
                length=float(reference.mean()),
                seconds=(time.perf_counter() - start) / len(coords),
                lengths=[float(x) for x in reference],
            )
        )
    rng = np.random.default_rng(0)
    for name, build in BASELINES.items():
        start = time.perf_counter()
        tours = np.stack([build(c, rng) for c in coords])
        _with_two_opt(
            name, coords, tours, reference, (time.perf_counter() - start) / len(coords), rows
        )
    if prior is None:
        return rows, None, None
    start = time.perf_counter()
    result = solve(
        rng_key,
        coords,
        prior=None if prior == "shipped" else prior,
        num_samples=num_samples,
        num_steps=num_steps,
        two_opt=False,
        prior_cities=prior_cities,
        progress_bar=progress_bar,
    )
    label = prior_label(num_samples)
    improved = _with_two_opt(
        label, coords, result.tours, reference, (time.perf_counter() - start) / len(coords), rows
    )
    return rows, result, improved


def paired_difference(rows: list[dict], method: str, baseline: str) -> tuple[float, float]:
    """Mean and standard error over instances of ``method``'s tour length over
    ``baseline``'s, minus one (negative: ``method`` is shorter)."""
    by_name = {r["method"]: np.asarray(r["lengths"]) for r in rows}
    return mean_and_standard_error(by_name[method] / by_name[baseline] - 1.0)


def format_table(rows: list[dict], title: str) -> str:
    """The rows as a Markdown table."""
    lines = [
        title,
        "",
        "| method | gap | +- s.e. | mean length | s / instance |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {100 * r['gap']:.2f} % | {100 * r['gap_se']:.2f} % | "
            f"{r['length']:.4f} | {r['seconds']:.3f} |"
        )
    return "\n".join(lines)


def plot_solution(coords, tour, adjacency, size: int, path: str) -> None:
    """The decoded tour, the relaxed adjacency ``A + A^T`` and its image, as a PNG."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend stays

    pieces = edge_images(coords, size)
    sym = adjacency + adjacency.T
    image = np.asarray(adjacency_image(sym[pieces.pairs[:, 0], pieces.pairs[:, 1]], pieces))
    fig = Figure(figsize=(10, 3.4))
    axes = fig.subplots(1, 3)
    closed = np.r_[tour, tour[:1]]
    axes[0].plot(*coords[closed].T, "-", lw=1)
    axes[0].plot(*coords.T, "k.", ms=4)
    axes[0].set_title("decoded tour + 2-opt")
    axes[1].imshow(sym, cmap="viridis")
    axes[1].set_title("relaxed adjacency A + A^T")
    axes[2].imshow(image[..., 0], origin="lower", cmap="gray", extent=(0, 1, 0, 1))
    axes[2].set_title("its image")
    for ax in (axes[0], axes[2]):
        ax.set(xlim=(0, 1), ylim=(0, 1), aspect="equal")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
