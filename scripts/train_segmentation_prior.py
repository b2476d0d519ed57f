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
from resumable import add_training_arguments, square_symmetries, train_image_prior


def label_maps(city: str, num_maps: int, size: int, cache: str, seed: int = 0) -> np.ndarray:
    """``(8 * num_maps, size, size)`` int8 label maps of ``city`` and their symmetries."""
    from numpyro_diffusion.tasks import segmentation as seg

    path = os.path.join(cache, f"landcover_{city}_{size}px_{num_maps}_seed{seed}.npy")
    if os.path.exists(path):
        return np.load(path)
    os.makedirs(cache, exist_ok=True)
    maps = seg.generate_maps(jax.random.PRNGKey(seed), num_maps, seg.CITIES[city], size)
    data = square_symmetries(maps).astype(np.int8)
    np.save(path, data)
    return data


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--city", default="A")
    parser.add_argument("--maps", type=int, default=5000)
    add_training_arguments(parser, steps=8000, segment=1000)
    args = parser.parse_args(argv)

    from numpyro_diffusion.tasks import segmentation as seg

    maps = label_maps(args.city, args.maps, args.size, args.cache)
    data = seg.one_hot_maps(maps, len(seg.CLASSES))
    print(f"{len(data)} training maps {data.shape[1:]}", file=sys.stderr, flush=True)
    train_image_prior(data, args, f"landcover_{args.city}_{args.size}px", learning_rate=5e-4)


if __name__ == "__main__":
    main()
