"""Calibration and accuracy of the annealed segmentation posterior as chains per image grow.

One annealed run of ``--chains`` chains per image of city B (held out from the prior's
training, the benchmark's weak colour priors), then the per-pixel probabilities of
disjoint groups of ``m`` of those chains for each ``m`` in ``--groups``: pixel accuracy
of their argmax, mean top-class probability (confidence) and expected calibration error,
averaged over the groups, with the ECE's bootstrap standard error over images. A
posterior the chains sampled would grow more accurate with more chains at a fixed
calibration; a growing gap between accuracy and confidence says the chains' spread over
modes is wider than the truth's.

    python benchmarks/segmentation_chains.py [--images 12 --chains 24]
    python benchmarks/segmentation_chains.py --quick
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import RESULTS, device_name, write_results  # noqa: E402

from numpyro_diffusion.tasks import segmentation as seg  # noqa: E402
from numpyro_diffusion.tasks.segmentation.scores import (  # noqa: E402
    calibration_error_spread,
    expected_calibration_error,
    pixel_accuracy,
)


def by_group_size(draw_probs: np.ndarray, truth: np.ndarray, sizes) -> list[dict]:
    """Scores of the mean probabilities of disjoint groups of ``m`` draws, for each ``m``
    in ``sizes``, from ``draw_probs`` ``(S, B, H, W, K)`` and ``truth`` ``(B, H, W)``."""
    rows = []
    for m in sizes:
        groups = [draw_probs[g * m : (g + 1) * m].mean(0) for g in range(len(draw_probs) // m)]
        rows.append(
            dict(
                chains=m,
                groups=len(groups),
                accuracy=float(np.mean([pixel_accuracy(p.argmax(-1), truth) for p in groups])),
                confidence=float(np.mean([p.max(-1).mean() for p in groups])),
                ece=float(np.mean([expected_calibration_error(p, truth) for p in groups])),
                ece_se=calibration_error_spread(groups[0], truth),
            )
        )
    return rows


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chains = [r["chains"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), constrained_layout=True)
    left.plot(chains, [r["accuracy"] for r in rows], "o-", label="pixel accuracy")
    left.plot(chains, [r["confidence"] for r in rows], "s-", label="mean confidence")
    left.set(xscale="log", xlabel="chains per image", title="accuracy and confidence")
    left.legend()
    right.errorbar(
        chains, [r["ece"] for r in rows], [r["ece_se"] for r in rows], marker="o", capsize=3
    )
    right.axhline(0.05, color="grey", ls="--", label="target 0.05")
    right.set(xscale="log", xlabel="chains per image", ylabel="ECE", title="calibration error")
    right.legend()
    for ax in (left, right):
        ax.set_xticks(chains, [str(c) for c in chains])
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--city", default="B")
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--chains", type=int, default=24)
    parser.add_argument("--groups", type=int, nargs="+", default=[1, 2, 4, 8, 12, 24])
    parser.add_argument("--seed", type=int, default=7, help="not the benchmark's 2024")
    parser.add_argument("--out", default=RESULTS)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.chains, args.groups = 1, 4, [1, 2, 4]
    if any(m > args.chains for m in args.groups):
        raise ValueError(f"--groups {args.groups} ask for more than --chains {args.chains}.")
    city = seg.CITIES[args.city]
    k_maps, k_render, k_run = jax.random.split(jax.random.PRNGKey(args.seed), 3)
    truth = np.asarray(seg.generate_maps(k_maps, args.images, city))
    images = seg.render(k_render, truth, city)
    walk = dict(levels=4, steps_per_level=1) if args.quick else dict(levels=50, steps_per_level=6)
    result = seg.segment(
        k_run,
        images,
        city=city,
        num_samples=args.chains,
        progress_bar=not args.quick,
        **walk,
    )
    rows = by_group_size(result.draw_probs, truth, args.groups)
    name = f"segmentation_chains_{args.city}" + ("_quick" if args.quick else "")
    lines = [
        f"# Segmentation of city {args.city}: the annealed posterior as chains per image grow",
        "",
        f"Device: {device_name()}. {args.images} images (seed {args.seed}), one run of "
        f"{args.chains} chains each (U-HMC, {walk['levels']} levels x {walk['steps_per_level']} "
        "steps), scored over "
        "disjoint groups of m chains (mean over groups; ECE's bootstrap standard error over "
        "images, first group).",
        "",
        "| chains per image | groups | pixel accuracy | mean confidence | ECE |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['chains']} | {r['groups']} | {100 * r['accuracy']:.1f} % | "
        f"{r['confidence']:.3f} | {r['ece']:.3f} +- {r['ece_se']:.3f} |"
        for r in rows
    ]
    write_results(args.out, name, dict(settings=vars(args), rows=rows), "\n".join(lines) + "\n")
    plot(rows, os.path.join(args.out, f"{name}.png"))
    return dict(rows=rows)


if __name__ == "__main__":
    main()
