"""Training in segments that survives interruption: the loop the prior scripts share."""

from __future__ import annotations

import os
import sys

import numpy as np


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
