"""Where the CPU time of the peer benchmark's network step goes as chains grow.

The value and gradient of ``peer_pytorch.py``'s two 4 x 128 residual-MLP energies, timed
three ways at each chain count: JAX called once a step (as that benchmark's "networks
alone" column times it), JAX inside one compiled loop of steps (as the annealed walk
runs it: a ``lax.fori_loop`` whose steps move the chains by the gradient), and eager
PyTorch. With each JAX figure, the minor page faults per step: a program's temporary
buffers are allocated afresh by every call, and above glibc's mmap threshold each call
maps, faults in and zeroes them again; a loop pays that once for all its steps.

    python benchmarks/network_step.py [--chains 1024 4096]
    python benchmarks/network_step.py --quick
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import RESULTS, device_name, write_results  # noqa: E402
from peer_pytorch import energy_models, torch_energy, torch_synchronize  # noqa: E402

CHAINS = (256, 1024, 2048, 4096, 8192, 16384)
LEVEL = 50


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _per_step(fn, steps: int, repeats: int) -> tuple[float, float]:
    """Median seconds per step over ``repeats`` calls of ``fn`` (which runs ``steps``
    steps) and the page faults per step."""
    fn()  # compiles, warms the caches
    seconds, before = [], _faults()
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append((time.perf_counter() - start) / steps)
    return statistics.median(seconds), (_faults() - before) / (repeats * steps)


def measure(chains: int, models, torch_energies, steps: int, repeats: int) -> dict:
    def log_density(x):
        t = jnp.full((chains,), LEVEL)
        return -sum(m.network.apply(m.params, x, t) for m in models).sum()

    value_and_grad = jax.value_and_grad(log_density)
    one_step = jax.jit(value_and_grad)

    @jax.jit
    def loop(x):
        def body(_, x):
            return x + 1e-4 * value_and_grad(x)[1]

        return jax.lax.fori_loop(0, steps, body, x)

    x = jax.random.normal(jax.random.PRNGKey(chains), (chains, 2))

    def called():
        for _ in range(steps):
            out = one_step(x)
        jax.block_until_ready(out)

    per_call, per_call_faults = _per_step(called, steps, repeats)
    in_loop, in_loop_faults = _per_step(lambda: jax.block_until_ready(loop(x)), steps, repeats)
    row = dict(
        chains=chains,
        per_call_ms=1e3 * per_call,
        per_call_faults=per_call_faults,
        in_loop_ms=1e3 * in_loop,
        in_loop_faults=in_loop_faults,
        pytorch_ms=None,
    )
    if torch_energies is not None:
        import torch

        x_torch = torch.from_numpy(jax.device_get(x).copy())

        def eager():
            for _ in range(steps):
                z = x_torch.detach().requires_grad_(True)
                log_p = -sum(e(z, LEVEL) for e in torch_energies)
                torch.autograd.grad(log_p.sum(), z)
            torch_synchronize()

        row["pytorch_ms"] = 1e3 * _per_step(eager, steps, repeats)[0]
    return row


def markdown(result: dict) -> str:
    lines = [
        "# The peer benchmark's network step on this device: per call, in a loop, PyTorch",
        "",
        f"Device: {result['device']}. Value and gradient of two 4 x 128 residual-MLP energies "
        f"(level {LEVEL}), median over {result['settings']['repeats']} repeats of "
        f"{result['settings']['steps']} steps after compilation; page faults are minor faults "
        "per step. PyTorch: eager, as in `peer_pytorch.py`.",
        "",
        "| chains | JAX per call (ms) | faults | JAX in a compiled loop (ms) | faults | PyTorch "
        "(ms) | us per chain: loop / PyTorch |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        torch_ms = r["pytorch_ms"]
        per_chain = 1e3 * r["in_loop_ms"] / r["chains"]
        torch_cell = "-" if torch_ms is None else f"{torch_ms:.2f}"
        torch_chain = "-" if torch_ms is None else f"{1e3 * torch_ms / r['chains']:.2f}"
        lines.append(
            f"| {r['chains']} | {r['per_call_ms']:.2f} | {r['per_call_faults']:.0f} | "
            f"{r['in_loop_ms']:.2f} | {r['in_loop_faults']:.0f} | {torch_cell} | "
            f"{per_chain:.2f} / {torch_chain} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, nargs="+", default=list(CHAINS))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="tiny settings (smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.chains, args.steps, args.repeats = [8, 32], 2, 1
    models = energy_models(128, 4, 100)
    try:
        torch_energies = [torch_energy(m.params, 128, 4) for m in models]
    except ImportError:  # the peer extra is not installed: JAX columns only
        torch_energies = None
    rows = []
    result = dict(device=device_name(), settings=vars(args), rows=rows)
    name = "network_step_quick" if args.quick else "network_step"
    for chains in args.chains:
        rows.append(measure(chains, models, torch_energies, args.steps, args.repeats))
        print(f"{chains:>6} chains: {rows[-1]}", file=sys.stderr)
    write_results(args.out, name, result, markdown(result))
    return result


if __name__ == "__main__":
    main()
