"""Saving and loading trained models in one self-describing file.

A checkpoint is a NumPy ``.npz`` archive (readable with ``numpy.load``) holding

- ``__numpyro_diffusion__``: a JSON string with ``format``
  (``"numpyro_diffusion.checkpoint"``), ``version``, ``network`` (the architecture
  from :func:`~numpyro_diffusion.networks.network_config`), ``schedule``
  (:meth:`VPSchedule.to_config`), ``parameterization`` and ``event_shape``;
- ``params/<module path>``: one array per network parameter, named by its path in
  the Flax variable tree joined with ``/``.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from numpyro_diffusion.errors import CheckpointError
from numpyro_diffusion.models import DiffusionModel
from numpyro_diffusion.networks import network_config, network_from_config
from numpyro_diffusion.schedules import VPSchedule

__all__ = ["save", "load", "read_archive", "write_archive", "FORMAT", "VERSION"]

FORMAT = "numpyro_diffusion.checkpoint"
VERSION = 1
_META = "__numpyro_diffusion__"
_PREFIX = "params/"


def save(path: str | os.PathLike, model: DiffusionModel) -> None:
    """Write ``model`` to ``path`` atomically (a temporary file, then a rename)."""
    if not isinstance(model, DiffusionModel):
        raise TypeError(f"save takes a DiffusionModel, got {type(model).__name__}.")
    meta = {
        "network": network_config(model.network),
        "schedule": model.schedule.to_config(),
        "parameterization": model.parameterization,
        "event_shape": list(model.event_shape),
    }
    write_archive(path, FORMAT, meta, model.params)


def load(path: str | os.PathLike, network: Any = None) -> DiffusionModel:
    """Read a checkpoint written by :func:`save`.

    Built-in networks are rebuilt from the stored configuration; a custom network
    must be passed as ``network`` (its parameters must match the stored ones).
    """
    meta, params = read_archive(path, FORMAT)
    if network is None:
        try:
            network = network_from_config(meta["network"])
        except ValueError as exc:
            raise CheckpointError(f"{os.fspath(path)!r}: {exc}") from exc
    event_shape = tuple(meta["event_shape"])
    _check_params_match(network, params, event_shape, os.fspath(path))
    return DiffusionModel(
        network,
        params,
        VPSchedule.from_config(meta["schedule"]),
        meta["parameterization"],
        event_shape,
    )


def write_archive(path: str | os.PathLike, format: str, meta: dict, params: Any) -> None:
    """Write a JSON header and a Flax parameter tree as one ``.npz``, atomically."""
    header = {"format": format, "version": VERSION, **meta}
    flat = traverse_util.flatten_dict(jax.device_get(params), sep="/")
    arrays = {_PREFIX + key: np.asarray(value) for key, value in flat.items()}
    arrays[_META] = np.array(json.dumps(header))
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".ckpt-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def read_archive(path: str | os.PathLike, format: str) -> tuple[dict, Any]:
    """Read :func:`write_archive`'s file: the header and the parameter tree."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"no checkpoint at {path!r}: the file does not exist.")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path!r} is not a checkpoint: it is not an .npz (zip) archive, or it is "
            "truncated. Save the model again with numpyro_diffusion.save."
        )
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as archive:
            contents = {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path!r} is not a readable checkpoint: it is truncated or corrupt "
            f"({type(exc).__name__}). Save the model again with numpyro_diffusion.save."
        ) from exc
    if _META not in contents:
        raise CheckpointError(
            f"{path!r} is an .npz archive but not a numpyro_diffusion checkpoint "
            f"(no {_META!r} entry); write checkpoints with numpyro_diffusion.save."
        )
    try:
        meta = json.loads(str(contents.pop(_META)))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path!r} has a corrupt header: {exc}.") from exc
    if meta.get("format") != format:
        raise CheckpointError(f"{path!r} has format {meta.get('format')!r}, not {format!r}.")
    if meta.get("version") != VERSION:
        raise CheckpointError(
            f"{path!r} is checkpoint version {meta.get('version')}; this library reads "
            f"version {VERSION}."
        )
    params = traverse_util.unflatten_dict(
        {k[len(_PREFIX) :]: jnp.asarray(v) for k, v in contents.items()}, sep="/"
    )
    return meta, params


def _check_params_match(network: Any, params: Any, event_shape: tuple, path: str) -> None:
    x = jnp.zeros((1, *event_shape))
    t = jnp.zeros((1,), jnp.int32)
    try:
        expected = jax.eval_shape(lambda: network.init(jax.random.PRNGKey(0), x, t, None))
    except Exception as exc:  # noqa: BLE001 - any failure means the network does not fit
        raise CheckpointError(
            f"{path!r}: the network {type(network).__name__} cannot be initialised on "
            f"event_shape {event_shape} ({exc})."
        ) from exc
    want = {k: v.shape for k, v in traverse_util.flatten_dict(expected, sep="/").items()}
    have = {k: v.shape for k, v in traverse_util.flatten_dict(params, sep="/").items()}
    if want != have:
        missing = sorted(set(want) - set(have))[:3]
        extra = sorted(set(have) - set(want))[:3]
        wrong = sorted(k for k in set(want) & set(have) if want[k] != have[k])[:3]
        raise CheckpointError(
            f"{path!r}: the stored parameters do not fit network {type(network).__name__} "
            f"(missing {missing}, unexpected {extra}, wrong shapes {wrong})."
        )
