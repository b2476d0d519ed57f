"""TSP: the image-prior relaxation against constructive baselines, gaps to LKH-3.

Fixed-seed uniform instances; for every method the mean optimality gap (length / LKH-3
length - 1) +- its standard error over instances, with and without 2-opt, and seconds
per instance. The prior's rows decode the relaxed adjacency of ``tasks.tsp.solve``
(plug-and-play, ``--samples`` restarts, the shortest decoded tour kept).

    python benchmarks/tsp.py                     # 128 TSP-50 instances
    python benchmarks/tsp.py --cities 20 --instances 256
    python benchmarks/tsp.py --quick             # smoke test
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import RESULTS, device_name, write_results  # noqa: E402

from numpyro_diffusion.tasks import tsp  # noqa: E402


def _row(name, coords, tours, reference, seconds):
    gaps = tsp.gap(tsp.tour_length(coords, tours), reference)
    return dict(
        method=name,
        gap=float(gaps.mean()),
        gap_se=float(gaps.std(ddof=1) / np.sqrt(len(gaps))) if len(gaps) > 1 else float("nan"),
        seconds=seconds,
    )


def evaluate(args) -> dict:
    coords = tsp.random_instances(jax.random.PRNGKey(args.seed), args.instances, args.cities)
    start = time.perf_counter()
    reference = tsp.tour_length(coords, tsp.reference_tours(coords, runs=args.lkh_runs))
    rows = [
        dict(
            method="LKH-3", gap=0.0, gap_se=0.0, seconds=(time.perf_counter() - start) / len(coords)
        )
    ]
    rng = np.random.default_rng(args.seed)
    for name, build in tsp.BASELINES.items():
        start = time.perf_counter()
        tours = np.stack([build(c, rng) for c in coords])
        built = (time.perf_counter() - start) / len(coords)
        rows.append(_row(name, coords, tours, reference, built))
        start = time.perf_counter()
        improved = np.stack([tsp.two_opt(c, t) for c, t in zip(coords, tours, strict=True)])
        rows.append(
            _row(
                f"{name} + 2-opt",
                coords,
                improved,
                reference,
                built + (time.perf_counter() - start) / len(coords),
            )
        )
    example = None
    if not args.no_prior:
        prior = tsp.load_tsp_prior(args.prior_cities, args.size) if args.prior is None else None
        if args.prior is not None:
            import numpyro_diffusion as nd

            prior = nd.load(args.prior)
        start = time.perf_counter()
        result = tsp.solve(
            jax.random.PRNGKey(args.seed + 1),
            coords,
            prior=prior,
            num_samples=args.samples,
            num_steps=args.pnp_steps,
            two_opt=False,
            prior_cities=args.prior_cities,
        )
        solved = (time.perf_counter() - start) / len(coords)
        label = f"image prior (plug-and-play x{args.samples})"
        rows.append(_row(label, coords, result.tours, reference, solved))
        start = time.perf_counter()
        improved = np.stack([tsp.two_opt(c, t) for c, t in zip(coords, result.tours, strict=True)])
        rows.append(
            _row(
                f"{label} + 2-opt",
                coords,
                improved,
                reference,
                solved + (time.perf_counter() - start) / len(coords),
            )
        )
        example = (coords[0], improved[0], result.adjacency[0], prior)
    return dict(rows=rows, example=example)


def plot(example, path, size):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    coords, tour, adjacency, _ = example
    pieces = tsp.edge_images(coords, size)
    sym = adjacency + adjacency.T
    image = np.asarray(tsp.adjacency_image(sym[pieces.pairs[:, 0], pieces.pairs[:, 1]], pieces))
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
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
    plt.close(fig)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cities", type=int, default=50)
    parser.add_argument("--instances", type=int, default=128)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--lkh-runs", type=int, default=10)
    parser.add_argument("--samples", type=int, default=4, help="plug-and-play restarts")
    parser.add_argument("--pnp-steps", type=int, default=256)
    parser.add_argument("--prior", default=None, help="a prior checkpoint (default: shipped)")
    parser.add_argument("--prior-cities", type=int, default=50)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--no-prior", action="store_true")
    parser.add_argument("--out", default=RESULTS)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.instances, args.lkh_runs, args.samples, args.pnp_steps = 2, 1, 1, 8
    out = evaluate(args)
    name = f"tsp{args.cities}" + ("_quick" if args.quick else "")
    lines = [
        f"# TSP-{args.cities}: gap to LKH-3 ({args.instances} instances, seed {args.seed})",
        "",
        f"Device: {device_name()}. Mean optimality gap +- standard error over instances; "
        "seconds per instance (2-opt rows include the construction).",
        "",
        "| method | gap | +- s.e. | s / instance |",
        "|---|---|---|---|",
    ]
    for r in out["rows"]:
        lines.append(
            f"| {r['method']} | {100 * r['gap']:.2f} % | {100 * r['gap_se']:.2f} % | "
            f"{r['seconds']:.3f} |"
        )
    write_results(args.out, name, dict(settings=vars(args), rows=out["rows"]), "\n".join(lines))
    if out["example"] is not None:
        plot(out["example"], os.path.join(args.out, f"{name}.png"), args.size)
    return out


if __name__ == "__main__":
    main()
