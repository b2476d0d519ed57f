"""Throughput of annealed MCMC with one process and with two (``jax.distributed``).

Each process is pinned to its own core (``taskset``) and has one CPU device; the
chains are split over the processes' devices (``chain_method="sharded"``), the
draws gathered to every process. Timed: the median of repeated runs after the first
(compiling) one, the whole ``run`` including the gather. The ratio of the
two-process throughput to the one-process one is the scaling efficiency (2 ideal).

    python benchmarks/multiprocess.py            # 4096 and 16384 chains, HMC
    python benchmarks/multiprocess.py --quick    # smoke test
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import RESULTS, write_results  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "distributed_sampling.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(num_processes: int, args: argparse.Namespace) -> dict:
    """Run the sampling script on ``num_processes`` pinned processes; process 0's timings."""
    out_dir = tempfile.mkdtemp()
    out = os.path.join(out_dir, "draws.npz")
    port = _free_port()
    cores = os.sched_getaffinity(0)
    pin = shutil.which("taskset") is not None and len(cores) >= num_processes
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    flags = [
        "--chains",
        str(args.chains),
        "--steps",
        str(args.steps),
        "--levels",
        str(args.levels),
        "--kernel",
        args.kernel,
        "--timed-runs",
        str(args.repeats),
        "--quiet",
    ]
    procs = []
    for i, core in zip(range(num_processes), sorted(cores), strict=False):
        cmd = [
            sys.executable,
            SCRIPT,
            "--coordinator",
            f"127.0.0.1:{port}",
            "--num-processes",
            str(num_processes),
            "--process-id",
            str(i),
            "--local-devices",
            "1",
            *flags,
        ]
        if i == 0:
            cmd += ["--out", out]
        if pin:
            cmd = ["taskset", "-c", str(core), *cmd]
        procs.append(subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True))
    logs = [p.communicate(timeout=1800)[1] for p in procs]
    for p, log in zip(procs, logs, strict=True):
        if p.returncode:
            raise RuntimeError(f"a process failed:\n{log[-3000:]}")
    with np.load(out) as data:
        timed = np.asarray(data["timed_seconds"])
        first = float(data["seconds"])
    shutil.rmtree(out_dir)
    seconds = float(np.median(timed))
    transitions = args.chains * args.levels * args.steps
    return dict(
        processes=num_processes,
        pinned=pin,
        first_run_seconds=first,
        seconds=seconds,
        transitions_per_second=transitions / seconds,
    )


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, nargs="+", default=[4096, 16384])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--levels", type=int, default=50)
    parser.add_argument("--kernel", default="hmc")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=RESULTS)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.chains, args.levels, args.steps, args.repeats = [64], 5, 2, 1
    rows = []
    for chains in args.chains:
        for n in (1, 2):
            rows.append(
                dict(
                    chains=chains,
                    **launch(n, argparse.Namespace(**{**vars(args), "chains": chains})),
                )
            )
    lines = [
        "# Annealed MCMC over processes (`jax.distributed`, CPU, gloo)",
        "",
        f"{args.levels} levels x {args.steps} {args.kernel} steps on the exact two-mode model "
        "of `scripts/distributed_sampling.py`; each process one CPU device"
        f"{', pinned to its own core' if rows[0]['pinned'] else ''}; median of "
        f"{args.repeats} runs after the compiling one (the whole `run`, gather included).",
        "",
        "| chains | processes | first run (compile) s | run s | transitions / s | vs 1 process |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        base = next(b for b in rows if b["chains"] == r["chains"] and b["processes"] == 1)
        r["speedup"] = r["transitions_per_second"] / base["transitions_per_second"]
        lines.append(
            f"| {r['chains']} | {r['processes']} | {r['first_run_seconds']:.1f} | "
            f"{r['seconds']:.2f} | {r['transitions_per_second']:.3g} | {r['speedup']:.2f}x |"
        )
    lines += [
        "",
        "What limits scaling: every level pools the chains across processes (the "
        "preconditioner's sums, the step-size cap, the level statistics: a few all-reduces "
        "through gloo a level) and each run gathers its draws to every process.",
    ]
    two = [r for r in rows if r["processes"] == 2]
    if len({r["chains"] for r in two}) >= 2:
        slope, fixed = np.polyfit([r["chains"] for r in two], [r["seconds"] for r in two], 1)
        lines[-1] += (
            f" A line through the {len(two)} sizes puts that fixed cost at {fixed:.2f} s a "
            f"run with two processes ({slope * 1e6:.0f} us a chain), so a process needs many "
            "chains before the second core pays."
        )
    lines.append("")
    name = "multiprocess_quick" if args.quick else "multiprocess"
    write_results(args.out, name, dict(settings=vars(args), rows=rows), "\n".join(lines))
    return dict(rows=rows)


if __name__ == "__main__":
    main()
