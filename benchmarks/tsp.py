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

import jax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import RESULTS, device_name, write_results  # noqa: E402

import numpyro_diffusion as nd  # noqa: E402
from numpyro_diffusion.tasks import tsp  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cities", type=int, default=50)
    parser.add_argument("--instances", type=int, default=128)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--lkh-runs", type=int, default=10)
    parser.add_argument("--samples", type=int, default=2, help="plug-and-play restarts")
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
    coords = tsp.random_instances(jax.random.PRNGKey(args.seed), args.instances, args.cities)
    prior = None
    if not args.no_prior:
        prior = "shipped" if args.prior is None else nd.load(args.prior)
    rows, result, improved = tsp.compare_methods(
        jax.random.PRNGKey(args.seed + 1),
        coords,
        prior=prior,
        num_samples=args.samples,
        num_steps=args.pnp_steps,
        lkh_runs=args.lkh_runs,
        prior_cities=args.prior_cities,
        progress_bar=not args.quick,
    )
    name = f"tsp{args.cities}" + ("_quick" if args.quick else "")
    title = (
        f"# TSP-{args.cities}: gap to LKH-3 ({args.instances} instances, seed {args.seed})\n\n"
        f"Device: {device_name()}. Mean optimality gap +- standard error over instances, "
        "mean tour length, seconds per instance (2-opt rows include the construction)."
    )
    table = tsp.format_table(rows, title)
    label = tsp.prior_label(args.samples)
    if result is not None and len(coords) > 1:
        versus = []
        for suffix in ("", " + 2-opt"):
            for baseline in ("greedy edge", "random"):
                mean, se = tsp.paired_difference(rows, label + suffix, baseline + suffix)
                versus.append(
                    f"| {label}{suffix} | {baseline}{suffix} | {100 * mean:+.2f} % | "
                    f"{100 * se:.2f} % |"
                )
        table += (
            "\n\nPaired over instances (length / baseline's length - 1; negative: the "
            "prior's tours are shorter):\n\n| method | baseline | mean | +- s.e. |\n"
            "|---|---|---|---|\n" + "\n".join(versus)
        )
    write_results(args.out, name, dict(settings=vars(args), rows=rows), table)
    if result is not None:
        tsp.plot_solution(
            coords[0],
            improved[0],
            result.adjacency[0],
            args.size,
            os.path.join(args.out, f"{name}.png"),
        )
    return dict(rows=rows)


if __name__ == "__main__":
    main()
