"""What the image-prior training scripts share: their options, the square's symmetries,
and training in segments that survives interruption."""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(os.path.expanduser("~"), ".cache", "numpyro_diffusion")


def add_training_arguments(parser: argparse.ArgumentParser, steps: int, segment: int) -> None:
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--segment", type=int, default=segment, help="steps between model saves")
    parser.add_argument("--save-every", type=int, default=250)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--base-channels", type=int, default=32)
    parser.add_argument("--cache", default=CACHE)
    parser.add_argument("--out", default=None)
    parser.add_argument("--state", default=None)


def square_symmetries(images: np.ndarray) -> np.ndarray:
    """``(8 N, H, W, ...)``: the 4 rotations of ``images`` ``(N, H, W, ...)`` and their
    mirror images."""
    views = [np.rot90(images, r, axes=(1, 2)) for r in range(4)]
    return np.concatenate(views + [v[:, :, ::-1] for v in views])


def train_in_segments(
    network, data, *, out: str, state: str, steps: int, segment: int, **train_kwargs
):
    """Train to ``steps`` in segments of ``segment`` steps, writing the model (EMA
    parameters) to ``out`` after each; the training state lives in ``state`` (saved
    every ``save_every`` steps by :func:`numpyro_diffusion.train`), so a killed run
    continues where it stopped and a later, longer run extends a finished one."""
    import numpyro_diffusion as nd

    os.makedirs(os.path.dirname(os.path.abspath(state)), exist_ok=True)
    done = 0
    if os.path.exists(state):
        with np.load(state) as saved:
            done = int(saved["step"])
        print(f"resuming from step {done} ({state})", file=sys.stderr, flush=True)
    model = None
    while done < steps:
        done = min(steps, done + segment)
        model = nd.train(network, data, num_steps=done, resume_path=state, **train_kwargs)
        nd.save(out, model)
        recent = float(np.mean(model.training_losses[-200:]))
        print(f"step {done}: loss {recent:.4f}; wrote {out}", file=sys.stderr, flush=True)
    return model


def train_image_prior(data, args: argparse.Namespace, name: str, learning_rate: float):
    """The shipped image priors' recipe: a U-Net (``args.base_channels``, mults (1, 2, 2)),
    a linear 1,000-level schedule, eps, Adam, EMA 0.999; the model goes to the package's
    checkpoints and the state to ``checkpoints/training/`` unless ``args`` say otherwise."""
    import jax
    import optax

    import numpyro_diffusion as nd

    return train_in_segments(
        nd.UNet(base_channels=args.base_channels, channel_mults=(1, 2, 2)),
        data,
        out=args.out or os.path.join(ROOT, "numpyro_diffusion", "checkpoints", f"{name}.npz"),
        state=args.state or os.path.join(ROOT, "checkpoints", "training", f"{name}.state.npz"),
        steps=args.steps,
        segment=args.segment,
        schedule=nd.VPSchedule.linear(1000),
        parameterization="eps",
        batch_size=args.batch,
        optimizer=optax.adam(learning_rate),
        rng_key=jax.random.PRNGKey(0),
        ema_decay=0.999,
        save_every=args.save_every,
    )
