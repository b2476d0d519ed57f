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
    return 0


if __name__ == "__main__":
    sys.exit(main())
