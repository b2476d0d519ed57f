"""The cost of the abstraction: AnnealedMCMC on a NumPyro model against a hand-written scan.

The same network and the same MALA walk (levels, steps per level, chains, fixed step
size, no predictor) run, for two cases (the shipped ring energy model, and a 3 x 128
MLP energy where per-step bookkeeping shows most),

(a) through ``AnnealedMCMC`` on a program ``diffusion_prior("x", prior)`` that takes
    the model as an argument, and
(b) as a hand-written ``jax.lax.scan`` over levels and steps of ``blackjax.mala``
    on the raw energy, chains vmapped, re-initialising the MALA state at each level
    (the density changes with ``t``, so any correct walk must).

Reported: compile times, and the steady-state time ratio (a)/(b), the median over
interleaved repeats. Target: ratio <= 1.05, and a second ``run`` does not recompile.

    python benchmarks/overhead.py [--case ring --case mlp3x128 --repeats 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import blackjax
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import RESULTS, device_name, write_results  # noqa: E402

from numpyro_diffusion import (
    DiffusionModel,
    EnergyNetwork,
    ResidualMLP,
    VPSchedule,
    diffusion_prior,
)
from numpyro_diffusion.infer import AnnealedMCMC
from numpyro_diffusion.tasks.demo import load_demo_models


def hand_written_walk(model, levels, steps: int, step_size: float):
    """A jitted ``(rng_key, x0 (C, 2)) -> x (C, 2)`` MALA walk straight on the energy."""
    kernel = blackjax.mala.build_kernel()

    @jax.jit
    def walk(rng_key, x0):
        chain_keys = jax.random.split(rng_key, x0.shape[0])

        def level(x, i):
            t = levels[i]

            def logdensity(y):
                return -model.energy(y, t)

            state = jax.vmap(blackjax.mala.init, (0, None))(x, logdensity)

            def step(state, j):
                keys = jax.vmap(lambda k: jax.random.fold_in(jax.random.fold_in(k, i), j))(
                    chain_keys
                )
                state, _ = jax.vmap(kernel, (0, 0, None, None))(keys, state, logdensity, step_size)
                return state, None

            state, _ = jax.lax.scan(step, state, jnp.arange(steps))
            return state.position, None

        x, _ = jax.lax.scan(level, x0, jnp.arange(levels.shape[0]))
        return x

    return walk


CASES = {
    # name: (description, chains, levels, steps per level)
    "ring": ("the shipped ring energy model (residual MLP 3 x 64)", 1000, None, 10),
    "mlp3x128": (
        "a 3 x 128 residual-MLP energy (initial weights): per-step "
        "bookkeeping shows most on a small network",
        1024,
        50,
        10,
    ),
}


def case_model(name: str) -> DiffusionModel:
    if name == "ring":
        return load_demo_models()[0]
    # zero output weights: the energy is ||x||^2 / sigma_t (a well-posed target), and every
    # layer is still computed and differentiated
    net = EnergyNetwork(ResidualMLP(hidden=128, num_blocks=3))
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 2)), jnp.zeros(1, jnp.int32))
    return DiffusionModel(net, params, VPSchedule.cosine(100), "energy", (2,))


def program(prior):
    diffusion_prior("x", prior)


def measure(
    case: str, chains: int, num_levels, steps: int, repeats: int, step_size: float = 1e-3
) -> dict:
    model = case_model(case)
    sampler = AnnealedMCMC(
        program,
        "mala",
        chains,
        steps_per_level=steps,
        levels=num_levels,
        step_size=step_size,
        predictor=None,
        progress_bar=False,
    )
    levels = jnp.asarray(sampler.resolve_levels(model.schedule))
    walk = hand_written_walk(model, levels, steps, step_size)
    x0 = jax.random.normal(jax.random.PRNGKey(1), (chains, 2))

    def run_library(seed):
        sampler.run(jax.random.PRNGKey(seed), model)
        jax.block_until_ready(sampler.get_samples()["x"])

    def run_hand(seed):
        jax.block_until_ready(walk(jax.random.PRNGKey(seed), x0))

    def timed(fn, seed):
        start = time.perf_counter()
        fn(seed)
        return time.perf_counter() - start

    first_library, first_hand = timed(run_library, 0), timed(run_hand, 0)
    library, hand = [], []
    for r in range(repeats):  # interleaved, so drifts of a shared machine hit both
        library.append(timed(run_library, r + 1))
        hand.append(timed(run_hand, r + 1))
    ratios = [a / b for a, b in zip(library, hand, strict=True)]
    return dict(
        case=case,
        description=CASES[case][0],
        chains=chains,
        levels=int(levels.shape[0]),
        steps_per_level=steps,
        repeats=repeats,
        device=device_name(),
        library_seconds=library,
        hand_written_seconds=hand,
        median_library_s=statistics.median(library),
        median_hand_written_s=statistics.median(hand),
        median_ratio=statistics.median(ratios),
        ratios=ratios,
        compile_library_s=first_library - statistics.median(library),
        compile_hand_written_s=first_hand - statistics.median(hand),
        library_traces=sampler.num_traces,
        target_ratio=1.05,
        gradient_evaluations=chains * int(levels.shape[0]) * (steps + 1),
    )


def markdown(results: list[dict]) -> str:
    lines = [
        "# Overhead of AnnealedMCMC against a hand-written BlackJAX scan",
        "",
        f"Device: {results[0]['device']}. MALA, fixed step size, no predictor; the same "
        "model through `AnnealedMCMC` on a NumPyro program (the model passed as an "
        "argument) and through a hand-written `lax.scan` over `blackjax.mala` on the raw "
        f"energy. Median over {results[0]['repeats']} interleaved repeats after compilation.",
        "",
        "| case | chains | levels x steps | AnnealedMCMC (s) | hand-written (s) | ratio "
        "| compilation (s), library / hand | traces |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['case']}: {r['description']} | {r['chains']} | {r['levels']} x "
            f"{r['steps_per_level']} | {r['median_library_s']:.3f} | "
            f"{r['median_hand_written_s']:.3f} | **{r['median_ratio']:.3f}** | "
            f"{r['compile_library_s']:.2f} / {r['compile_hand_written_s']:.2f} | "
            f"{r['library_traces']} |"
        )
    verdicts = [
        f"{r['case']} {'meets' if r['median_ratio'] <= r['target_ratio'] else 'misses'}"
        for r in results
    ]
    lines += [
        "",
        f"Target: ratio <= {results[0]['target_ratio']} ({'; '.join(verdicts)}). Traces: "
        f"times the sampler traced its walk over {results[0]['repeats'] + 1} runs (1: no "
        "recompilation).",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--case", choices=sorted(CASES), action="append", help="the cases to run (default: all)"
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="tiny settings (smoke test)")
    args = parser.parse_args(argv)
    results = []
    for case in args.case or sorted(CASES):
        _, chains, levels, steps = CASES[case]
        if args.quick:
            chains, levels, steps, args.repeats = 16, 5, 2, 2
        results.append(measure(case, chains, levels, steps, args.repeats))
    name = "overhead_quick" if args.quick else "overhead"
    write_results(args.out, name, {"cases": results}, markdown(results))
    for r in results:
        np.testing.assert_equal(r["library_traces"], 1)
    return {"cases": results}


if __name__ == "__main__":
    main()
