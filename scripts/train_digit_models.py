"""Regenerate the digit models shipped with the package (issue: plug-and-play on digits).

    python scripts/train_digit_models.py [--steps 6000] [--out numpyro_diffusion/checkpoints]

Trains, on the training split of scikit-learn's 8x8 digits:
- ``digits_eps.npz``: a class-conditional U-Net predicting eps,
- ``digits_energy.npz``: the same U-Net inside an energy (``form="dae"``),
both with classifier-free label dropout ``p_uncond = 0.1`` on a 200-level cosine
schedule, ``digit_classifier.npz``, the MLP classifier of the guidance benchmark and
the constraints, and ``digit_judge.npz``, an independent classifier (another seed, 1,500
steps) that judges generated digits in the tests, notebooks and benchmarks.
"""

from __future__ import annotations

import argparse
import os
import time

import jax

from numpyro_diffusion import save
from numpyro_diffusion.tasks.digits import (
    load_digits_data,
    save_classifier,
    train_classifier,
    train_digit_model,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=("eps", "energy", "classifier", "judge"), default=None)
    parser.add_argument("--out", default=os.path.join("numpyro_diffusion", "checkpoints"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    data = load_digits_data("train")
    key = jax.random.PRNGKey(args.seed)
    if args.only in (None, "classifier"):
        start = time.perf_counter()
        net, params = train_classifier(data, jax.random.fold_in(key, 0))
        path = os.path.join(args.out, "digit_classifier.npz")
        save_classifier(path, net, params)
        print(f"classifier: {time.perf_counter() - start:.0f} s -> {path}")
    if args.only in (None, "judge"):
        net, params = train_classifier(data, jax.random.PRNGKey(7), 1500)
        path = os.path.join(args.out, "digit_judge.npz")
        save_classifier(path, net, params)
        print(f"judge -> {path}")
    for i, parameterization in enumerate(("eps", "energy"), start=1):
        if args.only not in (None, parameterization):
            continue
        start = time.perf_counter()
        model = train_digit_model(
            data, parameterization, jax.random.fold_in(key, i), num_steps=args.steps
        )
        path = os.path.join(args.out, f"digits_{parameterization}.npz")
        save(path, model)
        print(
            f"{parameterization}: final loss {model.training_losses[-500:].mean():.4f}, "
            f"{time.perf_counter() - start:.0f} s -> {path}"
        )


if __name__ == "__main__":
    main()
