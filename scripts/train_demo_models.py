"""Regenerate the 2D energy models shipped with the package for the demo.

    python scripts/train_demo_models.py [--steps 6000] [--out numpyro_diffusion/checkpoints]

Trains Du et al.'s ring (8 Gaussians, radius 0.5, std 0.03) and vertical bar
(|x| <= 0.2, |y| <= 1) as energy-parameterised residual MLPs on a 100-level cosine
schedule, and saves them as ``ring.npz`` and ``bar.npz``.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import optax

from numpyro_diffusion import EnergyNetwork, ResidualMLP, VPSchedule, save, train
from numpyro_diffusion.toy2d import bar, ring

DEMO_SCHEDULE = dict(num_steps=100)
DEMO_NETWORK = dict(hidden=64, num_blocks=3, time_embed_dim=32)


def train_demo_model(toy, rng_key, steps: int, progress_bar: bool = True):
    data_key, train_key = jax.random.split(rng_key)
    data = toy.sample(data_key, 100_000)
    return train(
        EnergyNetwork(ResidualMLP(**DEMO_NETWORK), form="dae"),
        data,
        schedule=VPSchedule.cosine(**DEMO_SCHEDULE),
        parameterization="energy",
        num_steps=steps,
        batch_size=1000,
        optimizer=optax.adam(1e-3),
        rng_key=train_key,
        ema_decay=0.999,
        progress_bar=progress_bar,
    )


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
