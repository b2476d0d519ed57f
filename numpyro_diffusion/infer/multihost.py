"""Chains across processes on JAX's multi-controller runtime (``jax.distributed``).

Every process runs the same program on the same inputs; arrays sharded over the chains
span all processes' devices. Inputs are built from each process's full copy (keys are
small), results are gathered to every process before they leave the sampler, and
anything printed is printed by process 0 alone.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["CHAIN_MESH_AXIS", "chain_sharding", "shard_chains", "gather", "is_main_process"]

CHAIN_MESH_AXIS = "chain"


def chain_sharding() -> NamedSharding:
    """Leading (chain) axis split over every device of every process."""
    return NamedSharding(
        Mesh(np.array(jax.devices()), (CHAIN_MESH_AXIS,)), PartitionSpec(CHAIN_MESH_AXIS)
    )


def shard_chains(*arrays: Any) -> tuple[jax.Array, ...]:
    """Global arrays split over the chain axis, each process filling its own devices'
    shards from its copy of the (identical) full array."""
    sharding = chain_sharding()
    out = []
    for a in arrays:
        host = np.asarray(a)
        out.append(jax.make_array_from_callback(host.shape, sharding, lambda idx, h=host: h[idx]))
    return tuple(out)


def _fetch(leaf: Any) -> Any:
    if not isinstance(leaf, jax.Array) or leaf.is_fully_addressable:
        return leaf
    if leaf.is_fully_replicated:
        return np.asarray(leaf.addressable_data(0))
    return multihost_utils.process_allgather(leaf, tiled=True)


def gather(tree: Any) -> Any:
    """The tree with every array that spans other processes' devices gathered into a
    NumPy array on every process (a no-op in a single process)."""
    if jax.process_count() == 1:
        return tree
    return jax.tree.map(_fetch, tree)


def is_main_process() -> bool:
    """Whether this process prints and writes (process 0 of a multi-process run)."""
    return jax.process_index() == 0
