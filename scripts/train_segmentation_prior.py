"""Train the land-cover prior: a diffusion model of city A's label maps (one-hot, [-1, 1]).

Resumable like the TSP prior (``scripts/resumable.py``): the training state goes to
``checkpoints/training/`` (committed), the model to the package's checkpoints after
every segment, progress to stderr::

    nohup python scripts/train_segmentation_prior.py --steps 8000 > seg_train.log 2>&1 &

The maps (``--maps`` of them, with the 8 symmetries of the square) are cached under
``--cache``.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import numpy as np
import optax
from resumable import train_in_segments

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(os.path.expanduser("~"), ".cache", "numpyro_diffusion")


def label_maps(city: str, num_maps: int, size: int, cache: str, seed: int = 0) -> np.ndarray:
    """``(8 * num_maps, size, size)`` int8 label maps of ``city`` and their symmetries."""
    from numpyro_diffusion.tasks import segmentation as seg

    path = os.path.join(cache, f"landcover_{city}_{size}px_{num_maps}_seed{seed}.npy")
    if os.path.exists(path):
        return np.load(path)
    os.makedirs(cache, exist_ok=True)
    maps = seg.generate_maps(jax.random.PRNGKey(seed), num_maps, seg.CITIES[city], size)
    views = [np.rot90(maps, r, axes=(1, 2)) for r in range(4)]
    views += [v[:, :, ::-1] for v in views]
    data = np.concatenate(views).astype(np.int8)
    np.save(path, data)
    return data


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--city", default="A")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--maps", type=int, default=5000)
    parser.add_argument("--steps", type=int, default=8000)
    parser.add_argument("--segment", type=int, default=1000, help="steps between model saves")
    parser.add_argument("--save-every", type=int, default=250)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--base-channels", type=int, default=32)
    parser.add_argument("--cache", default=CACHE)
    parser.add_argument("--out", default=None)
    parser.add_argument("--state", default=None)
    args = parser.parse_args(argv)

    import numpyro_diffusion as nd
    from numpyro_diffusion.tasks import segmentation as seg

    name = f"landcover_{args.city}_{args.size}px"
    out = args.out or os.path.join(ROOT, "numpyro_diffusion", "checkpoints", f"{name}.npz")
    state = args.state or os.path.join(ROOT, "checkpoints", "training", f"{name}.state.npz")
    maps = label_maps(args.city, args.maps, args.size, args.cache)
    data = seg.one_hot_maps(maps, len(seg.CLASSES))
    print(f"{len(data)} training maps {data.shape[1:]}", file=sys.stderr, flush=True)
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
        optimizer=optax.adam(5e-4),
        rng_key=jax.random.PRNGKey(0),
        ema_decay=0.999,
        save_every=args.save_every,
    )


if __name__ == "__main__":
    main()
