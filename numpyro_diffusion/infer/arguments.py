"""Model arguments split into what a compiled program traces and what it is built for."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["SplitArguments", "split_arguments"]


class SplitArguments(NamedTuple):
    """``(args, kwargs)`` as a cache key, the traced leaves, and the way back.

    Arrays (including the parameters of diffusion models, which are pytrees) are
    traced leaves keyed by shape and dtype; every other leaf is static, keyed by value
    (or identity when unhashable), so a compiled program is reused exactly when it
    computes the same thing.
    """

    key: Hashable
    dynamic: list  # the array leaves, traced
    rebuild: Callable[[list], tuple[tuple, dict]]  # dynamic leaves -> (args, kwargs)


def split_arguments(args: tuple, kwargs: dict) -> SplitArguments:
    leaves, treedef = jax.tree.flatten((args, kwargs))
    is_dynamic = [isinstance(x, (jax.Array, np.ndarray)) for x in leaves]
    key = (
        treedef,
        tuple(
            (np.shape(x), str(jnp.result_type(x))) if d else _hashable(x)
            for x, d in zip(leaves, is_dynamic, strict=True)
        ),
    )
    dynamic = [x for x, d in zip(leaves, is_dynamic, strict=True) if d]

    def rebuild(dynamic_leaves: list) -> tuple[tuple, dict]:
        it = iter(dynamic_leaves)
        full = [next(it) if d else x for x, d in zip(leaves, is_dynamic, strict=True)]
        return jax.tree.unflatten(treedef, full)

    return SplitArguments(key, dynamic, rebuild)


def _hashable(x: Any) -> Any:
    try:
        hash(x)
        return x
    except TypeError:
        return ("id", id(x))
