"""Throughput as the number of chains grows, for a 2D MLP and U-Nets on 8x8 and 32x32 images.

For each model and device JAX sees, an annealed ULA walk (``--levels`` levels x
``--steps`` steps, no predictor) runs with 1, 4, 16, ... chains. Reported: chain-steps
per second and network evaluations per second (a gradient of the energy for the MLP
energy model, a forward pass for the eps U-Nets), the median of ``--repeats`` runs after
compilation. Growth stops at a time cap per run (``--max-seconds``) or at an
out-of-memory error; the Markdown says where throughput saturates.

    python benchmarks/throughput.py [--max-chains 16384 --max-seconds 30]
    python benchmarks/throughput.py --models unet-8x8 --conv xla   # one model, XLA's convs

Each row's first run is timed too (compilation included), printed as it ends, so a
walk that compiles for minutes on some device shows where.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import RESULTS, device_name, write_results  # noqa: E402

from numpyro_diffusion import DiffusionModel, UNet, VPSchedule
from numpyro_diffusion.infer import AnnealedMCMC
from numpyro_diffusion.tasks.demo import load_demo_models


def build_models(
    quick: bool, conv: str = "patch", names: tuple[str, ...] | None = None
) -> dict[str, DiffusionModel]:
    """The models by name; ``conv``: the U-Nets' convolutions as patches times a matrix
    (``"patch"``, the library's default) or XLA's own (``"xla"``); ``names``: keep the
    models whose name starts with one of these (only those are built)."""
    builders = {"mlp-2d (energy)": lambda: load_demo_models()[0]}
    for size in [8] if quick else [8, 32]:
        builders[f"unet-{size}x{size} (eps)"] = lambda size=size: _unet_model(size, conv)
    if names:
        builders = {k: v for k, v in builders.items() if k.startswith(names)}
        if not builders:
            raise ValueError(f"no model name starts with one of {names}.")
    return {name: build() for name, build in builders.items()}


def _unet_model(size: int, conv: str) -> DiffusionModel:
    """An untrained U-Net over ``(size, size, 1)`` images (the walk's cost does not
    depend on the weights)."""
    net = UNet(
        base_channels=16,
        channel_mults=(1, 2) if size == 8 else (1, 2, 2),
        time_embed_dim=32,
        patch_conv=conv == "patch",
    )
    shape = (size, size, 1)
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((1, *shape)), jnp.zeros(1, jnp.int32))
    return DiffusionModel(net, params, VPSchedule.cosine(100), "eps", shape)


def time_walk(model, chains, levels, steps, repeats):
    sampler = AnnealedMCMC(
        model,
        "ula",
        chains,
        steps_per_level=steps,
        levels=levels,
        step_size=1e-4,
        predictor=None,
        progress_bar=False,
    )

    def once(seed):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            sampler.run(jax.random.PRNGKey(seed))
        jax.block_until_ready(sampler.get_samples()["x"])
        return time.perf_counter() - start

    first = once(0)
    print(f"  {chains} chains: first run (compiling) {first:.1f} s", flush=True)
    times = [once(r + 1) for r in range(repeats)]
    return first, statistics.median(times)


def measure(args) -> list[dict]:
    rows = []
    chain_counts = [4**k for k in range(0, 8) if 4**k <= args.max_chains]
    if args.max_chains not in chain_counts:
        chain_counts.append(args.max_chains)
    # the smoke test's process fakes four CPU devices: one is enough to show the script runs
    devices = jax.devices()[:1] if args.quick else jax.devices()
    for device in devices:
        models = build_models(args.quick, args.conv, args.models and tuple(args.models.split(",")))
        for name, model in models.items():
            stopped = None
            for chains in chain_counts:
                row = dict(device=device_name(device), model=name, chains=chains)
                try:
                    with jax.default_device(device):
                        first, median = time_walk(
                            model, chains, args.levels, args.steps, args.repeats
                        )
                except Exception as exc:  # noqa: BLE001 - record why growth stopped
                    if "RESOURCE_EXHAUSTED" in str(exc) or "out of memory" in str(exc).lower():
                        stopped = f"out of memory at {chains} chains"
                        break
                    raise
                steps = chains * args.levels * args.steps
                evals = chains * args.levels * (args.steps + 1)
                row |= dict(
                    seconds=median,
                    compile_seconds=first - median,
                    chain_steps_per_s=steps / median,
                    network_evals_per_s=evals / median,
                )
                rows.append(row)
                print(
                    f"{row['device']} {name:>22} {chains:>6} chains: "
                    f"{row['chain_steps_per_s']:>12.0f} chain-steps/s  ({median:.3f} s; "
                    f"first run {first:.1f} s)",
                    flush=True,
                )
                if median > args.max_seconds:
                    stopped = f"time cap: {median:.1f} s per run at {chains} chains"
                    break
            rows.append(
                dict(device=device_name(device), model=name, stopped=stopped or "all sizes ran")
            )
    return rows


def saturation(rows: list[dict], steps_per_run: int) -> dict[str, str]:
    notes = {}
    for name in sorted({r["model"] for r in rows}):
        runs = [r for r in rows if r["model"] == name and "chains" in r]
        if not runs:
            continue
        best = max(r["chain_steps_per_s"] for r in runs)
        knee = min(r["chains"] for r in runs if r["chain_steps_per_s"] >= 0.8 * best)
        latency_ms = 1e3 * runs[0]["seconds"] / steps_per_run
        notes[name] = (
            f"reaches 80 % of its best {best:,.0f} chain-steps/s at {knee} chains; "
            f"with {runs[0]['chains']} chain(s) a step costs {latency_ms:.3f} ms "
            "(latency and per-step overhead bound); past the knee the device's "
            "arithmetic is the limit."
        )
    return notes


def markdown(rows, notes, args) -> str:
    lines = [
        "# Throughput of annealed ULA as chains grow",
        "",
        f"{args.levels} levels x {args.steps} steps per run; median of {args.repeats} runs "
        "after compilation. A network evaluation is a gradient of the energy (MLP) or a "
        "forward pass (eps U-Nets).",
        "",
        "| device | model | chains | s / run | chain-steps / s | network evals / s |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "chains" in r:
            lines.append(
                f"| {r['device']} | {r['model']} | {r['chains']} | {r['seconds']:.3f} | "
                f"{r['chain_steps_per_s']:,.0f} | {r['network_evals_per_s']:,.0f} |"
            )
    lines += ["", "Where growth stopped:", ""]
    lines += [f"- {r['model']} on {r['device']}: {r['stopped']}" for r in rows if "stopped" in r]
    lines += ["", "Scaling:", ""] + [f"- {k}: {v}" for k, v in notes.items()]
    return "\n".join(lines) + "\n"


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    for name in sorted({r["model"] for r in rows}):
        runs = [r for r in rows if r["model"] == name and "chains" in r]
        ax.loglog(
            [r["chains"] for r in runs],
            [r["chain_steps_per_s"] for r in runs],
            marker="o",
            label=name,
        )
    ax.set(xlabel="chains", ylabel="chain-steps per second", title="annealed ULA throughput")
    ax.legend()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-chains", type=int, default=16384)
    parser.add_argument("--levels", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-seconds", type=float, default=30.0)
    parser.add_argument("--models", default=None, help="comma-separated name prefixes")
    parser.add_argument("--conv", choices=("patch", "xla"), default="patch")
    parser.add_argument("--out", default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="tiny settings (smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.max_chains, args.levels, args.steps, args.repeats = 4, 2, 2, 1
    rows = measure(args)
    notes = saturation(rows, args.levels * args.steps)
    name = "throughput_quick" if args.quick else "throughput"
    write_results(
        args.out,
        name,
        dict(settings=vars(args), rows=rows, notes=notes),
        markdown(rows, notes, args),
    )
    plot(rows, os.path.join(args.out, f"{name}.png"))
    return rows


if __name__ == "__main__":
    main()
