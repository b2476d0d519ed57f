"""The models shipped in the package's ``checkpoints/`` folder, loaded by name."""

from __future__ import annotations

import os

import numpyro_diffusion as nd

__all__ = ["CHECKPOINTS", "load_shipped_prior"]

CHECKPOINTS = os.path.join(os.path.dirname(nd.__file__), "checkpoints")


def load_shipped_prior(name: str, family: str, what: str, script: str) -> nd.DiffusionModel:
    """``checkpoints/{name}.npz``; if it is missing, an error that lists the shipped
    checkpoints of ``family`` (their name prefix) and names the ``script`` that trains
    ``what``."""
    path = os.path.join(CHECKPOINTS, f"{name}.npz")
    if not os.path.exists(path):
        shipped = sorted(f for f in os.listdir(CHECKPOINTS) if f.startswith(family))
        raise FileNotFoundError(
            f"no shipped {what} (shipped: {shipped}); train one with {script} or pass prior=..."
        )
    return nd.load(path)
