"""The ``numpyro-diffusion`` command."""

from __future__ import annotations

import argparse
import sys

from numpyro_diffusion.infer.kernels import KERNELS


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="numpyro-diffusion",
        description="Trained diffusion models as priors inside NumPyro programs.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="compose two trained 2D energy models and compare reverse diffusion with "
        "annealed MCMC",
        description="Compose two trained 2D energy models (a ring of Gaussians times a bar) "
        "as a NumPyro program, sample the product by reverse diffusion with summed scores "
        "and by annealed MCMC, print a table (log-likelihood under the true density, "
        "acceptance, divergences) and write a PNG of both sample clouds.",
    )
    demo.add_argument("--chains", type=_positive, default=1000, help="chains (default 1000)")
    demo.add_argument(
        "--levels",
        type=_positive,
        default=50,
        help="noise levels walked, of the models' 100 (default 50)",
    )
    demo.add_argument(
        "--steps-per-level",
        type=_positive,
        default=10,
        help="MCMC steps at each level (default 10)",
    )
    demo.add_argument(
        "--kernel",
        choices=sorted(KERNELS),
        default="hmc",
        help="MCMC kernel of the annealed run (default hmc)",
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument(
        "--output",
        default="demo_output/demo.png",
        help="where to write the PNG (default demo_output/demo.png)",
    )
    demo.add_argument(
        "--retrain",
        action="store_true",
        help="train the two models now instead of loading the shipped ones",
    )
    demo.add_argument(
        "--train-steps",
        type=_positive,
        default=6000,
        help="training steps per model with --retrain (default 6000)",
    )
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")
    tsp = sub.add_parser(
        "tsp",
        help="solve TSP instances with the image prior and compare with baselines",
        description="Solve random or given TSP instances by plug-and-play with the shipped "
        "image prior, print the gap table against nearest neighbour, farthest insertion, "
        "greedy edge and random starts (each with 2-opt) and LKH-3 when elkai is "
        "installed, and save a figure of the first instance (tour, relaxed adjacency, image).",
    )
    tsp.add_argument("--cities", type=_positive, default=50, help="cities a random instance")
    tsp.add_argument("--instances", type=_positive, default=4, help="random instances")
    tsp.add_argument("--input", default=None, help=".npy of coordinates (B, N, 2) in [0, 1]")
    tsp.add_argument("--samples", type=_positive, default=1, help="plug-and-play restarts")
    tsp.add_argument("--steps", type=_positive, default=256, help="plug-and-play steps")
    tsp.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    tsp.add_argument("--output", default="tsp_output/tsp.png", help="where to write the PNG")
    segment = sub.add_parser(
        "segment",
        help="segment land-cover images with the label-map prior",
        description="Segment generated images of a city (default B, held out from the "
        "prior's training) or given RGB images (.npy, (B, H, W, 3) in [0, 1]) with the "
        "shipped land-cover prior; print the scores when the truth is known and save a "
        "figure of the first image (image, truth, MAP labels, entropy).",
    )
    segment.add_argument("--city", default="B", help="city of generated images (default B)")
    segment.add_argument(
        "--palette", default=None, help="city whose palette sets the colour priors"
    )
    segment.add_argument("--images", type=_positive, default=2, help="generated images")
    segment.add_argument("--input", default=None, help=".npy of RGB images (B, H, W, 3) in [0, 1]")
    segment.add_argument("--method", default="annealed", help="annealed, plug_and_play, ...")
    segment.add_argument("--samples", type=_positive, default=16, help="chains per image")
    segment.add_argument("--levels", type=_positive, default=50, help="annealed levels")
    segment.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    segment.add_argument(
        "--output", default="segment_output/segment.png", help="where to write the PNG"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    if args.command == "demo":
        from numpyro_diffusion.tasks.demo import run_demo

        run_demo(
            chains=args.chains,
            levels=args.levels,
            steps_per_level=args.steps_per_level,
            kernel=args.kernel,
            seed=args.seed,
            output=args.output,
            retrain=args.retrain,
            train_steps=args.train_steps,
            progress_bar=not args.no_progress,
        )
    elif args.command == "tsp":
        return _tsp(args)
    elif args.command == "segment":
        return _segment(args)
    return 0


def _tsp(args: argparse.Namespace) -> int:
    import importlib.util
    import os

    import jax
    import numpy as np

    from numpyro_diffusion.tasks import tsp

    if args.input is not None:
        coords = tsp.check_coords(np.load(args.input))
    else:
        coords = tsp.random_instances(jax.random.PRNGKey(args.seed), args.instances, args.cities)
    lkh = 10 if importlib.util.find_spec("elkai") is not None else None
    rows, result, improved = tsp.compare_methods(
        jax.random.PRNGKey(args.seed + 1),
        coords,
        prior="shipped",
        num_samples=args.samples,
        num_steps=args.steps,
        lkh_runs=lkh,
    )
    reference = "LKH-3" if lkh else "no reference (pip install elkai for gaps)"
    print(
        tsp.format_table(rows, f"{len(coords)} instances of {coords.shape[1]} cities; {reference}")
    )
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    size = tsp.load_tsp_prior().event_shape[0]
    tsp.plot_solution(coords[0], improved[0], result.adjacency[0], size, args.output)
    print(f"wrote {args.output}")
    return 0


def _segment(args: argparse.Namespace) -> int:
    import os

    import jax
    import numpy as np

    from numpyro_diffusion.tasks import segmentation as seg

    for name in (args.city, args.palette):
        if name is not None and name not in seg.CITIES:
            raise SystemExit(f"unknown city {name!r}; built in: {sorted(seg.CITIES)}")
    k_maps, k_render, k_run = jax.random.split(jax.random.PRNGKey(args.seed), 3)
    truth = None
    if args.input is not None:
        images = seg.check_images(np.load(args.input))
    else:
        truth = seg.generate_maps(k_maps, args.images, seg.CITIES[args.city])
        images = seg.render(k_render, truth, seg.CITIES[args.city])
    city = seg.CITIES[args.palette or (args.city if args.input is None else "A")]
    result = seg.segment(
        k_run,
        images,
        city=city,
        method=args.method,
        num_samples=args.samples,
        levels=args.levels,
        progress_bar=True,
    )
    if truth is not None:
        row = seg.score(args.method, result.probs, truth, float("nan"))
        print(
            f"{args.method}: pixel accuracy {100 * row['accuracy']:.1f} %, mean IoU "
            f"{100 * row['miou']:.1f} %, ECE {row['ece']:.3f} over {len(images)} images"
        )
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    seg.plot_segmentation(images[0], result, 0, args.output, None if truth is None else truth[0])
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
