"""Where the peer walk's time goes, operation by operation, in the library and in PyTorch.

``peer_pytorch.py`` times the annealed MALA walk (product of two 4 x 128 residual-MLP
energy models) against an eager PyTorch loop; this script profiles both at the same
settings and sorts each framework's operations into what they do:

- the library: every leaf operation of the compiled walk, as the JAX profiler records it
  (XLA's CPU runtime, one event an operation; loops and calls are not counted, their
  bodies are), by the HLO metadata of its root (from an XLA dump): the networks' matrix
  products (fusions holding a dot), the networks' other work (normalisation, activations,
  their gradients), random numbers (threefry and the samplers built on it), and the
  kernel and the walk (proposal, Metropolis-Hastings, bookkeeping);
- PyTorch: ``torch.profiler``'s self time of each ATen operation: matrix products
  (``mm``, ``addmm``, ...), random numbers (``randn``, ``rand``, ...), and everything else.

Reported per chain-step (one value and gradient of both networks): microseconds in each
class, and the profiled run's wall time. Operations can overlap on the 2 threads, so the
classes can sum to more than the wall; the profiler's own cost inflates both frameworks'
figures, so compare classes, not the wall against ``peer_pytorch.md``.

    python benchmarks/walk_profile.py [--chains 1024 16384 --levels 2]
    python benchmarks/walk_profile.py --quick
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

DUMP = tempfile.mkdtemp(prefix="walk-profile-hlo-")
# the compiled walk's HLO, to name what each profiled operation does (read once, below)
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + f" --xla_dump_to={DUMP} --xla_dump_hlo_as_text --xla_dump_hlo_module_re=.*walk.*"
).strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402

import numpyro_diffusion as nd  # noqa: E402
from numpyro_diffusion.infer import AnnealedMCMC  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import RESULTS, device_name, write_results  # noqa: E402
from peer_pytorch import (  # noqa: E402
    BLOCK,
    STEP_SIZE,
    STEPS_PER_LEVEL,
    energy_models,
    import_torch,
    torch_energy,
    torch_walk,
)

LIBRARY_CLASSES = ("network: matrix products", "network: other", "random numbers", "kernel, walk")
TORCH_CLASSES = ("matrix products", "random numbers", "other operations")
CONTROL_FLOW = ("while", "call", "conditional")
RANDOM = ("threefry", "_uniform", "_normal", "bernoulli", "random_bits", "random_")
NETWORK = ("EnergyNetwork", "ResidualMLP")
TORCH_MATMUL = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear")
TORCH_RANDOM = ("aten::randn", "aten::rand", "aten::normal_", "aten::uniform_")


def hlo_operations(hlo_text: str) -> dict[str, tuple[str, bool]]:
    """``{instruction: (op_name metadata, holds a dot)}`` of an optimised HLO module."""
    computations: dict[str, str] = {}
    for block in re.split(r"\n(?=%\S+ \(|ENTRY )", hlo_text):
        header = re.match(r"(?:ENTRY )?%(\S+) ", block)
        if header:
            computations[header.group(1)] = block
    operations = {}
    for line in hlo_text.splitlines():
        m = re.match(r"\s*(?:ROOT )?%(\S+) = .*?\s([\w-]+)\(", line)
        if not m:
            continue
        op_name = re.search(r'op_name="([^"]*)"', line)
        called = re.search(r"calls=%(\S+?)[,\s]", line)
        body = computations.get(called.group(1), "") if called else line
        holds_dot = m.group(2) in ("dot", "convolution") or " dot(" in body
        operations[m.group(1)] = (op_name.group(1) if op_name else "", holds_dot)
    return operations


def library_class(op_name: str, holds_dot: bool) -> str:
    if any(r in op_name for r in RANDOM):
        return "random numbers"
    if any(n in op_name for n in NETWORK):
        return "network: matrix products" if holds_dot else "network: other"
    return "kernel, walk"


def profile_library(sampler: AnnealedMCMC, key) -> tuple[dict[str, float], float]:
    """Seconds in each class of the compiled walk's operations, and the run's wall time."""
    trace_dir = tempfile.mkdtemp(prefix="walk-profile-trace-")
    jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
    start = time.perf_counter()
    sampler.run(key)
    jax.block_until_ready(sampler.get_samples()["x"])
    wall = time.perf_counter() - start
    jax.profiler.stop_trace()
    (path,) = glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"), recursive=True)
    with gzip.open(path) as f:
        events = json.load(f)
    events = events["traceEvents"] if isinstance(events, dict) else events
    dumps = sorted(glob.glob(os.path.join(DUMP, "*jit_walk.cpu_after_optimizations.txt")))
    with open(dumps[-1]) as f:
        operations = hlo_operations(f.read())
    seconds: dict[str, float] = collections.Counter()
    for event in events:
        args = event.get("args", {})
        if event.get("ph") != "X" or args.get("hlo_module") != "jit_walk":
            continue
        name = args["hlo_op"]
        if name.split(".")[0] in CONTROL_FLOW:
            continue
        op_name, holds_dot = operations.get(name, ("", False))
        seconds[library_class(op_name, holds_dot)] += event["dur"] * 1e-6
    return {c: seconds[c] for c in LIBRARY_CLASSES}, wall


def profile_torch(walk, x0, generator) -> tuple[dict[str, float], float]:
    """Seconds of self time in each class of the eager walk's ATen operations, and wall."""
    import torch

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        walk(x0, generator)
        wall = time.perf_counter() - start
    seconds: dict[str, float] = collections.Counter()
    for event in prof.key_averages():
        if event.key in TORCH_MATMUL:
            cls = "matrix products"
        elif event.key in TORCH_RANDOM:
            cls = "random numbers"
        else:
            cls = "other operations"
        seconds[cls] += event.self_cpu_time_total * 1e-6
    return {c: seconds[c] for c in TORCH_CLASSES}, wall


def measure(chains: int, args, models, torch_energies) -> dict:
    import torch

    schedule = models[0].schedule
    levels = schedule.walk_levels(args.levels)
    sampler = AnnealedMCMC(
        nd.product(*models),
        "mala",
        chains,
        STEPS_PER_LEVEL,
        levels=args.levels,
        step_size=STEP_SIZE,
        predictor=None,
        progress_bar=False,
        chain_block_size=args.block if chains > args.block else None,
    )
    key = jax.random.PRNGKey(chains)
    sampler.run(key)  # compiles (and dumps the walk's HLO)
    jax.block_until_ready(sampler.get_samples()["x"])
    library, library_wall = profile_library(sampler, key)

    sigmas = np.asarray(schedule.sigmas, np.float64)
    walk = torch_walk(torch_energies, sigmas, levels, STEPS_PER_LEVEL, STEP_SIZE)
    generator = torch.Generator().manual_seed(chains)
    x0 = torch.randn(chains, 2, generator=generator)
    walk(x0, generator)  # warm
    pytorch, pytorch_wall = profile_torch(walk, x0, generator)

    chain_steps = chains * len(levels) * (STEPS_PER_LEVEL + 1)

    def per_step(seconds: dict[str, float]) -> dict[str, float]:
        return {c: 1e6 * s / chain_steps for c, s in seconds.items()}

    return dict(
        chains=chains,
        levels=len(levels),
        block=args.block if chains > args.block else None,
        library_us=per_step(library),
        library_wall_us=1e6 * library_wall / chain_steps,
        pytorch_us=per_step(pytorch),
        pytorch_wall_us=1e6 * pytorch_wall / chain_steps,
    )


def markdown(result: dict) -> str:
    lines = [
        "# Where the peer walk's time goes: the library and PyTorch, profiled",
        "",
        f"Device: {result['device']}; PyTorch on {result['torch_threads']} threads. The walk of "
        "`peer_pytorch.py` (annealed MALA, product of two 4 x 128 residual-MLP energy "
        "models, 10 steps a level, fixed step), a few levels, profiled once after "
        "compilation. Microseconds per chain-step (one value and gradient of both "
        "networks) in each class of operation: the library's from the JAX profiler's "
        "events of the compiled walk (leaf operations, classed by their HLO metadata), "
        "PyTorch's from torch.profiler's self time of its ATen operations. Profiling slows "
        "both; operations overlapping on two threads can sum past the wall.",
        "",
    ]
    head = " | ".join(LIBRARY_CLASSES)
    lines += [
        f"| chains | levels | library: {head} | library wall | PyTorch: "
        f"{' | '.join(TORCH_CLASSES)} | PyTorch wall |",
        "|" + "---|" * (4 + len(LIBRARY_CLASSES) + len(TORCH_CLASSES)),
    ]
    for r in result["rows"]:
        block = f" (blocks of {r['block']})" if r["block"] else ""
        lib = " | ".join(f"{r['library_us'][c]:.3f}" for c in LIBRARY_CLASSES)
        tor = " | ".join(f"{r['pytorch_us'][c]:.3f}" for c in TORCH_CLASSES)
        lines.append(
            f"| {r['chains']}{block} | {r['levels']} | {lib} | {r['library_wall_us']:.3f} | "
            f"{tor} | {r['pytorch_wall_us']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, nargs="+", default=[1024, 16384])
    parser.add_argument("--levels", type=int, default=2)
    parser.add_argument("--block", type=int, default=BLOCK)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--out", default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="tiny settings (smoke test)")
    args = parser.parse_args(argv)
    torch = import_torch("walk_profile.py")
    if jax.default_backend() != "cpu":
        raise SystemExit("benchmarks/walk_profile.py profiles the CPU walk; run it on a CPU.")
    if args.quick:
        args.chains, args.levels, args.hidden, args.blocks, args.block = [4, 16], 1, 16, 1, 8
    models = energy_models(args.hidden, args.blocks, 100)
    torch_energies = [torch_energy(m.params, args.hidden, args.blocks) for m in models]
    name = "walk_profile_quick" if args.quick else "walk_profile"
    rows: list[dict] = []
    result = dict(
        device=device_name(),
        torch_threads=torch.get_num_threads(),
        settings=vars(args),
        rows=rows,
    )
    for chains in args.chains:
        rows.append(measure(chains, args, models, torch_energies))
        write_results(args.out, name, result, markdown(result))
    return result


if __name__ == "__main__":
    main()
