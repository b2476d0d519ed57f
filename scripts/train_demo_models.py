"""Regenerate the 2D energy models shipped with the package for the demo.

    python scripts/train_demo_models.py [--steps 6000] [--out numpyro_diffusion/checkpoints]

Trains Du et al.'s ring (8 Gaussians, radius 0.5, std 0.03) and vertical bar
(|x| <= 0.2, |y| <= 1) by the demo's recipe (``tasks.demo.train_demo_model``, the
same one ``numpyro-diffusion demo --retrain`` uses) and saves ``ring.npz`` and
``bar.npz``.
"""

from __future__ import annotations

import argparse
import os
import time

import jax

from numpyro_diffusion import save
from numpyro_diffusion.tasks.demo import train_demo_model
from numpyro_diffusion.tasks.toy2d import bar, ring


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("numpyro_diffusion", "checkpoints"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for i, (name, toy) in enumerate([("ring", ring()), ("bar", bar())]):
        start = time.perf_counter()
        model = train_demo_model(toy, jax.random.PRNGKey(args.seed * 100 + i), args.steps)
        path = os.path.join(args.out, f"{name}.npz")
        save(path, model)
        print(
            f"{name}: final loss {model.training_losses[-500:].mean():.4f}, "
            f"{time.perf_counter() - start:.0f} s -> {path}"
        )


if __name__ == "__main__":
    main()
