"""A host-side progress bar for compiled ``lax.scan`` loops."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["progress_scan", "announce_compiling"]

_BARS: dict[str, Any] = {}


def _update(label: str, total: int, i: Any) -> None:
    from tqdm.auto import tqdm

    if jax.process_index() != 0:  # one bar for a multi-process run
        return
    i = int(i)
    bar = _BARS.get(label)
    if bar is None or i == 0:
        if bar is not None:
            bar.close()
        bar = _BARS[label] = tqdm(total=total, desc=label, file=sys.stderr, leave=True)
    bar.n = i + 1
    bar.refresh()
    if i + 1 >= total:
        bar.close()
        _BARS.pop(label, None)


def progress_scan(
    body: Callable, init: Any, xs: Any, *, length: int, label: str, enabled: bool
) -> tuple[Any, Any]:
    """``jax.lax.scan`` over ``jnp.arange(length)`` and ``xs`` that reports progress.

    ``body(carry, (i, x))`` receives the step index ``i`` first. When ``enabled`` the
    index goes to a tqdm bar on the host about twenty times in the loop; the callback
    is compiled in, so toggling ``enabled`` is a different program.
    """
    every = max(1, length // 20)

    def wrapped(carry, i_x):
        i = i_x[0]
        if enabled:
            report = (i % every == 0) | (i == length - 1)
            jax.lax.cond(
                report,
                lambda: jax.debug.callback(lambda j: _update(label, length, j), i),
                lambda: None,
            )
        return body(carry, i_x)

    return jax.lax.scan(wrapped, init, (jnp.arange(length), xs), length=length)


def announce_compiling(what: str, enabled: bool) -> None:
    """Say on stderr that ``what`` is being compiled (called while jit traces, which it
    does only to compile); process 0 alone in a multi-process run."""
    if enabled and jax.process_index() == 0:
        print(f"compiling the {what} ...", file=sys.stderr, flush=True)
