"""The library against the PyTorch loop a user would otherwise write: annealed MALA on a
product of two energy models.

The walk: the product of two 4 x 128 residual-MLP energy models (Du et al.'s 2D network,
``E_raw = ||net(x, t) - x||^2``, ``log p_t = -E_raw / sigma_t`` each; random weights, as
speed does not depend on them), every level of a 100-level cosine schedule from its
``first_conditioned_level`` down (fewer, evenly spaced, for the largest chain counts) x
10 MALA steps, a fixed step size, no predictor, an accept / reject decision per chain.

(a) ``AnnealedMCMC(nd.product(m1, m2), "mala", ...)`` with every chain moved at once
    (``chain_block_size=None``), and above ``--block`` chains also a block at a time
    (``chain_block_size=--block``; the CPU default, ``"auto"``, moves blocks of 1,024);
(b) a plain eager PyTorch loop with the same weights (copied from the Flax parameters;
    the energies agree to float32 precision): value and gradient by autograd, kept for
    the current state, correct Metropolis-Hastings, the level's energy recomputed when
    ``t`` changes (as any correct walk must). It runs on the GPU when JAX does.

Also timed: the value and gradient of the two networks alone, per step, in JAX (jitted)
and in PyTorch, with the GFLOP/s they reach against a 2048 x 2048 float32 matrix product
in each framework. Reported: medians over interleaved repeats after compilation and the
ratio library / PyTorch (target: <= 1 at every chain count).

    pip install -e ".[peer]"
    python benchmarks/peer_pytorch.py [--chains 1 16 256 --repeats 3]
    python benchmarks/peer_pytorch.py --quick
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import numpyro_diffusion as nd
from numpyro_diffusion.infer import AnnealedMCMC

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import RESULTS, device_name, write_results  # noqa: E402

CHAINS = (1, 4, 16, 64, 256, 1024, 4096, 16384)
STEP_SIZE = 1e-3
STEPS_PER_LEVEL = 10
# steps of a walk (levels x steps) that keep a run near a few seconds on a CPU
STEP_BUDGET = 1_000_000
BLOCK = 1024


def energy_models(hidden: int, blocks: int, num_levels: int) -> list[nd.DiffusionModel]:
    """Two residual-MLP energy models with random (non-zero) weights."""
    schedule = nd.VPSchedule.cosine(num_levels)
    models = []
    for seed in range(2):
        base = nd.ResidualMLP(hidden=hidden, num_blocks=blocks, zero_init_output=False)
        network = nd.EnergyNetwork(base, "dae")
        params = network.init(
            jax.random.PRNGKey(seed), jnp.zeros((1, 2)), jnp.zeros((1,), jnp.int32)
        )
        models.append(nd.DiffusionModel(network, params, schedule, "energy", (2,)))
    return models


def mlp_flops(hidden: int, blocks: int, dim: int = 2) -> int:
    """Multiply-add FLOPs of one chain's energy value and input gradient for one network
    (the per-chain matrix products; the level's embedding is shared by all chains)."""
    forward = 2 * dim * hidden + blocks * 2 * (2 * hidden * hidden) + 2 * hidden * dim
    return 2 * forward  # the gradient with respect to the input costs one more pass


# ----- PyTorch -----------------------------------------------------------------------


def import_torch(script: str):
    """PyTorch, or an exit that names the extra to install."""
    try:
        import torch
    except ImportError as error:
        raise SystemExit(f"benchmarks/{script} needs PyTorch: pip install -e '.[peer]'") from error
    return torch


def torch_device() -> str:
    """PyTorch's device: the GPU when JAX runs on one (the two compared on one device)."""
    import torch

    return "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"


def torch_synchronize() -> None:
    import torch

    if torch_device() == "cuda":
        torch.cuda.synchronize()


def torch_energy(params: dict, hidden: int, blocks: int):
    """``(x (C, 2), t int) -> E_raw (C,)`` in PyTorch, on the weights of a Flax
    ``EnergyNetwork(ResidualMLP)``."""
    import torch

    device = torch_device()
    p = jax.tree_util.tree_map(
        lambda a: torch.from_numpy(np.array(a)).to(device), params["params"]["base"]
    )
    F = torch.nn.functional

    def dense(layer, h):
        return h @ layer["kernel"] + layer["bias"]

    def layer_norm(layer, h):
        return F.layer_norm(h, (h.shape[-1],), layer["scale"], layer["bias"], eps=1e-6)

    def embedding(t: int):
        dim = 32
        half = dim // 2
        freqs = torch.exp(
            -math.log(10_000.0) * torch.arange(half, device=device) / max(half - 1, 1)
        )
        angles = float(t) * freqs[None]
        emb = torch.cat([torch.sin(angles), torch.cos(angles)], -1)
        emb_net = p["TimeClassEmbedding_0"]
        return dense(emb_net["Dense_1"], F.silu(dense(emb_net["Dense_0"], emb)))

    def energy(x, t: int):
        emb = embedding(t)
        h = dense(p["Dense_0"], x)
        for b in range(blocks):
            r = dense(p[f"Dense_{3 * b + 1}"], F.silu(layer_norm(p[f"LayerNorm_{2 * b}"], h)))
            r = r + dense(p[f"Dense_{3 * b + 2}"], emb)
            r = dense(p[f"Dense_{3 * b + 3}"], F.silu(layer_norm(p[f"LayerNorm_{2 * b + 1}"], r)))
            h = h + r
        h = F.silu(layer_norm(p[f"LayerNorm_{2 * blocks}"], h))
        out = dense(p[f"Dense_{3 * blocks + 1}"], h)
        return ((out - x) ** 2).sum(-1)

    return energy


def torch_walk(energies, sigmas, levels, steps: int, step_size: float):
    """``(x0 (C, 2) tensor, generator) -> (x, acceptance)``: annealed MALA on
    ``log p_t = -sum_i E_i(x, t) / sigma_t``, eager PyTorch."""
    import torch

    def value_and_grad(x, t):
        x = x.detach().requires_grad_(True)
        logp = -sum(e(x, t) for e in energies) / sigmas[t]
        (grad,) = torch.autograd.grad(logp.sum(), x)
        return logp.detach(), grad

    def walk(x, generator):
        accepted = torch.zeros((), device=x.device)
        for t in levels:
            logp, grad = value_and_grad(x, int(t))
            for _ in range(steps):
                noise = torch.randn(x.shape, generator=generator, device=x.device)
                proposal = x + step_size * grad + math.sqrt(2 * step_size) * noise
                logp_new, grad_new = value_and_grad(proposal, int(t))
                forward = ((proposal - x - step_size * grad) ** 2).sum(-1)
                backward = ((x - proposal - step_size * grad_new) ** 2).sum(-1)
                log_ratio = logp_new - logp + (forward - backward) / (4 * step_size)
                u = torch.rand(x.shape[0], generator=generator, device=x.device)
                accept = torch.log(u) < log_ratio
                x = torch.where(accept[:, None], proposal, x)
                logp = torch.where(accept, logp_new, logp)
                grad = torch.where(accept[:, None], grad_new, grad)
                accepted += accept.float().mean()  # no host sync a step
        return x, float(accepted) / (len(levels) * steps)

    return walk


# ----- timing ------------------------------------------------------------------------


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    torch_synchronize()
    return time.perf_counter() - start


def _median_seconds(fn, repeats: int) -> float:
    return statistics.median(_seconds(fn) for _ in range(repeats))


def gemm_gflops(framework: str, n: int = 2048, repeats: int = 5) -> float:
    """float32 ``n x n`` matrix-product GFLOP/s: the machine's practical peak."""
    if framework == "jax":
        a = jax.random.normal(jax.random.PRNGKey(0), (n, n))
        matmul = jax.jit(jnp.matmul)
        matmul(a, a).block_until_ready()
        seconds = _median_seconds(lambda: matmul(a, a).block_until_ready(), repeats)
    else:
        import torch

        a = torch.randn(n, n, device=torch_device())
        a @ a
        seconds = _median_seconds(lambda: a @ a, repeats)
    return 2 * n**3 / seconds / 1e9


def measure(chains: int, models, args, torch_energies) -> dict:
    import torch

    schedule = models[0].schedule
    usable = schedule.first_conditioned_level + 1
    num_levels = max(1, min(usable, args.step_budget // (chains * STEPS_PER_LEVEL)))
    levels = schedule.walk_levels(num_levels)
    sigmas = np.asarray(schedule.sigmas, np.float64)
    flops_per_step = chains * 2 * mlp_flops(args.hidden, args.blocks)

    def annealed_mala(block):
        return AnnealedMCMC(
            nd.product(*models),
            "mala",
            chains,
            STEPS_PER_LEVEL,
            levels=num_levels,
            step_size=STEP_SIZE,
            predictor=None,
            progress_bar=False,
            chain_block_size=block,
        )

    samplers = {"library": annealed_mala(None)}
    if chains > args.block:
        samplers["library_blocks"] = annealed_mala(args.block)
    key = jax.random.PRNGKey(chains)

    def run_library(name):
        samplers[name].run(key)
        jax.block_until_ready(samplers[name].get_samples()["x"])

    walk = torch_walk(torch_energies, sigmas, levels, STEPS_PER_LEVEL, STEP_SIZE)
    generator = torch.Generator(torch_device()).manual_seed(chains)
    x0 = torch.randn(chains, 2, generator=generator, device=torch_device())
    torch_acceptance = []

    def pytorch():
        torch_acceptance.append(walk(x0, generator)[1])

    # the networks alone: value and gradient of the summed log density, once a step
    t = int(levels[len(levels) // 2])

    def jax_logp(x):
        return -sum(m.network.apply(m.params, x, jnp.full((chains,), t)) for m in models)

    jax_step = jax.jit(jax.value_and_grad(lambda x: jax_logp(x).sum()))
    x_jax = jax.random.normal(key, (chains, 2))

    def jax_networks():
        for _ in range(args.network_steps):
            out = jax_step(x_jax)
        jax.block_until_ready(out)

    x_torch = x0.clone()

    def torch_networks():
        for _ in range(args.network_steps):
            x = x_torch.detach().requires_grad_(True)
            logp = -sum(e(x, t) for e in torch_energies)
            torch.autograd.grad(logp.sum(), x)

    start = time.perf_counter()
    run_library("library")  # compiles
    compile_seconds = time.perf_counter() - start
    timed = {name: functools.partial(run_library, name) for name in samplers}
    timed |= dict(
        pytorch=pytorch,
        jax_networks=jax_networks,
        pytorch_networks=torch_networks,
    )
    for fn in timed.values():
        fn()
    seconds = {name: [] for name in timed}
    for _ in range(args.repeats):  # interleaved, so drifts in machine load hit all
        for name, fn in timed.items():
            seconds[name].append(_seconds(fn))
    s = {name: statistics.median(values) for name, values in seconds.items()}
    library_s, pytorch_s = s["library"], s["pytorch"]
    jax_net = s["jax_networks"] / args.network_steps
    torch_net = s["pytorch_networks"] / args.network_steps
    walk_steps = len(levels) * (STEPS_PER_LEVEL + 1)  # a value and gradient per step and level
    blocks_s = s.get("library_blocks")
    return dict(
        chains=chains,
        levels=len(levels),
        library_s=library_s,
        library_blocks_s=blocks_s,
        pytorch_s=pytorch_s,
        ratio=library_s / pytorch_s,
        ratio_blocks=None if blocks_s is None else blocks_s / pytorch_s,
        library_compile_s=compile_seconds,
        library_acceptance=float(np.mean(samplers["library"].level_stats.acceptance_rate)),
        pytorch_acceptance=float(np.mean(torch_acceptance)),
        jax_network_ms=1e3 * jax_net,
        pytorch_network_ms=1e3 * torch_net,
        jax_network_gflops=flops_per_step / jax_net / 1e9,
        pytorch_network_gflops=flops_per_step / torch_net / 1e9,
        library_walk_gflops=flops_per_step * walk_steps / library_s / 1e9,
        pytorch_walk_gflops=flops_per_step * walk_steps / pytorch_s / 1e9,
    )


def check_agreement(models, torch_energies) -> float:
    """Largest relative difference of the two frameworks' energies at random points."""
    import torch

    x = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (64, 2)))
    worst = 0.0
    for model, energy in zip(models, torch_energies, strict=True):
        for t in (0, 50, 90):
            ours = np.asarray(model.network.apply(model.params, x, jnp.full((64,), t)))
            theirs = energy(torch.from_numpy(x.copy()).to(torch_device()), t).cpu().numpy()
            worst = max(worst, float(np.max(np.abs(ours - theirs) / (np.abs(ours) + 1e-3))))
    return worst


def markdown(result: dict, args) -> str:
    rows, gemm = result["rows"], result["gemm_gflops"]
    blocked = any(r["library_blocks_s"] is not None for r in rows)
    lines = [
        "# Annealed MALA: the library against a plain PyTorch loop",
        "",
        f"Device: {result['device']}; PyTorch on {result['torch_threads']}; float32 matrix "
        f"products at JAX's precision {result['jax_matmul_precision'] or 'default'}. "
        f"Product of two {args.blocks} x "
        f"{args.hidden} residual-MLP energy models, {STEPS_PER_LEVEL} MALA steps per level "
        f"of a {args.num_levels}-level cosine schedule (every usable level; evenly spaced "
        "fewer where chains x levels would run long), fixed step, no predictor. Median of "
        f"{args.repeats} interleaved repeats after compilation. Energies agree to "
        f"{result['agreement']:.1e} (relative). GEMM peak (2048 x 2048 float32): JAX "
        f"{gemm['jax']:.0f}, PyTorch {gemm['pytorch']:.0f} GFLOP/s.",
        "",
        "| chains | levels | library, all at once (s) | PyTorch (s) | ratio | "
        + (f"library, blocks of {args.block} (s): ratio | " if blocked else "")
        + "networks alone, JAX / PyTorch (ms per step) | GFLOP/s: "
        "library walk / PyTorch walk / JAX networks | acceptance, library / PyTorch |",
        "|---|---|---|---|---|" + ("---|" if blocked else "") + "---|---|---|",
    ]
    for r in rows:
        if not blocked:
            blocks = ""
        elif r["library_blocks_s"] is None:
            blocks = "- | "
        else:
            blocks = f"{r['library_blocks_s']:.3f}: **{r['ratio_blocks']:.2f}** | "
        lines.append(
            f"| {r['chains']} | {r['levels']} | {r['library_s']:.3f} | {r['pytorch_s']:.3f} | "
            f"**{r['ratio']:.2f}** | "
            + blocks
            + f"{r['jax_network_ms']:.3f} / {r['pytorch_network_ms']:.3f} | "
            f"{r['library_walk_gflops']:.1f} / {r['pytorch_walk_gflops']:.1f} / "
            f"{r['jax_network_gflops']:.1f} | {r['library_acceptance']:.2f} / "
            f"{r['pytorch_acceptance']:.2f} |"
        )
    slower = [r["chains"] for r in rows if r["ratio"] > 1.0]
    slower_blocked = [
        r["chains"] for r in rows if min(r["ratio"], r["ratio_blocks"] or np.inf) > 1.0
    ]
    target = "Target: ratio <= 1 at every chain count. All chains at once: " + (
        f"not met at {slower} chains" if slower else "met at every chain count"
    )
    if blocked:
        target += f"; with blocks of {args.block} above that many chains: " + (
            f"not met at {slower_blocked}" if slower_blocked else "met at every chain count"
        )
    lines += ["", target + "."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, nargs="+", default=list(CHAINS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--num-levels", type=int, default=100)
    parser.add_argument("--step-budget", type=int, default=STEP_BUDGET)
    parser.add_argument("--network-steps", type=int, default=20)
    parser.add_argument(
        "--block", type=int, default=BLOCK, help="chain_block_size timed above this many chains"
    )
    parser.add_argument("--out", default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="tiny settings (smoke test)")
    args = parser.parse_args(argv)
    torch = import_torch("peer_pytorch.py")
    if args.quick:
        args.chains, args.repeats, args.hidden, args.blocks = [1, 16], 1, 16, 1
        args.num_levels, args.network_steps, args.block = 10, 2, 8
    models = energy_models(args.hidden, args.blocks, args.num_levels)
    torch_energies = [torch_energy(m.params, args.hidden, args.blocks) for m in models]
    agreement = check_agreement(models, torch_energies)
    gemm = {f: gemm_gflops(f, 256 if args.quick else 2048) for f in ("jax", "pytorch")}
    device = device_name()
    threads = "the GPU" if torch_device() == "cuda" else f"{torch.get_num_threads()} threads"
    name = "peer_pytorch_quick" if args.quick else "peer_pytorch"
    rows = []
    result = dict(
        device=device,
        torch_threads=threads,
        jax_matmul_precision=jax.config.jax_default_matmul_precision,
        settings=vars(args),
        agreement=agreement,
        gemm_gflops=gemm,
        rows=rows,
    )
    for chains in args.chains:
        rows.append(measure(chains, models, args, torch_energies))
        r = rows[-1]
        print(
            f"{chains:>6} chains: library {r['library_s']:.3f} s, PyTorch {r['pytorch_s']:.3f} s, "
            f"ratio {r['ratio']:.2f}",
            file=sys.stderr,
        )
        # written after every chain count: a stopped run keeps the rows it finished
        write_results(args.out, name, result, markdown(result, args))
    return result


if __name__ == "__main__":
    main()
