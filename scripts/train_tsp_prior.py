"""Train the TSP image prior: an unconditional diffusion model of rendered LKH-3 tours.

Resumable: the training state (parameters, Adam moments, EMA, losses, step) is saved
every ``--save-every`` steps to ``--state`` (``checkpoints/training/``, committed with
the repository so that any machine can continue), and the model (EMA parameters) is
written to ``--out`` after every segment: an interrupted run continues where it
stopped, and the shipped prior grows across sessions. Progress goes to stderr
(redirect it to a log)::

    nohup python scripts/train_tsp_prior.py --steps 20000 > tsp_train.log 2>&1 &

The data (uniform instances, their LKH-3 tours through elkai, and the 8 symmetries of
the square) are cached under ``--cache``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import numpy as np
from resumable import add_training_arguments, square_symmetries, train_image_prior


def tour_images(cities: int, instances: int, size: int, cache: str, seed: int = 0) -> np.ndarray:
    """``(8 * instances, size, size, 1)`` images of LKH tours and their symmetries."""
    from numpyro_diffusion.tasks import tsp

    path = os.path.join(cache, f"tsp{cities}_{size}px_{instances}_seed{seed}.npy")
    if os.path.exists(path):
        return np.load(path)
    os.makedirs(cache, exist_ok=True)
    coords = tsp.random_instances(jax.random.PRNGKey(seed), instances, cities)
    start = time.perf_counter()
    tours = []
    for k in range(0, instances, 500):
        tours.append(tsp.reference_tours(coords[k : k + 500], runs=1))
        print(
            f"LKH tours {k + 500}/{instances} ({time.perf_counter() - start:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
    images = tsp.render_tours(coords, np.concatenate(tours), size=size)
    data = square_symmetries(images).astype(np.float32)
    np.save(path, data)
    return data


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cities", type=int, default=50)
    parser.add_argument("--instances", type=int, default=10_000)
    add_training_arguments(parser, steps=20_000, segment=2000)
    args = parser.parse_args(argv)

    data = tour_images(args.cities, args.instances, args.size, args.cache)
    print(f"{len(data)} training images {data.shape[1:]}", file=sys.stderr, flush=True)
    train_image_prior(data, args, f"tsp{args.cities}_{args.size}px", learning_rate=2e-4)


if __name__ == "__main__":
    main()
