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
import optax
from resumable import train_in_segments

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(os.path.expanduser("~"), ".cache", "numpyro_diffusion")


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
    views = [np.rot90(images, r, axes=(1, 2)) for r in range(4)]
    views += [v[:, :, ::-1] for v in views]
    data = np.concatenate(views).astype(np.float32)
    np.save(path, data)
    return data


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cities", type=int, default=50)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--segment", type=int, default=2000, help="steps between model saves")
    parser.add_argument("--save-every", type=int, default=250)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--base-channels", type=int, default=32)
    parser.add_argument("--cache", default=CACHE)
    parser.add_argument("--out", default=None)
    parser.add_argument("--state", default=None)
    args = parser.parse_args(argv)

    import numpyro_diffusion as nd

    name = f"tsp{args.cities}_{args.size}px"
    out = args.out or os.path.join(ROOT, "numpyro_diffusion", "checkpoints", f"{name}.npz")
    state = args.state or os.path.join(ROOT, "checkpoints", "training", f"{name}.state.npz")
    data = tour_images(args.cities, args.instances, args.size, args.cache)
    print(f"{len(data)} training images {data.shape[1:]}", file=sys.stderr, flush=True)
    train_in_segments(
        nd.UNet(base_channels=args.base_channels, channel_mults=(1, 2, 2)),
        data,
        out=out,
        state=state,
        steps=args.steps,
        segment=args.segment,
        schedule=nd.VPSchedule.linear(1000),
        parameterization="eps",
        batch_size=args.batch,
        optimizer=optax.adam(2e-4),
        rng_key=jax.random.PRNGKey(0),
        ema_decay=0.999,
        save_every=args.save_every,
    )


if __name__ == "__main__":
    main()
