"""The cost of the abstraction: AnnealedMCMC on a NumPyro model against a hand-written scan.

The same trained network (the shipped ring energy model) and the same MALA walk
(levels, steps per level, chains, fixed step size, no predictor) run

(a) through ``AnnealedMCMC`` on ``lambda: diffusion_prior("x", model)``, and
(b) as a hand-written ``jax.lax.scan`` over levels and steps of ``blackjax.mala``
    on the raw energy, chains vmapped, re-initialising the MALA state at each level
    (the density changes with ``t``, so any correct walk must).

Reported: compile times, and the steady-state time ratio (a)/(b), the median over
interleaved repeats. Target: ratio <= 1.05, and a second ``run`` does not recompile.

    python benchmarks/overhead.py [--chains 1000 --levels 100 --steps 10 --repeats 7]
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

from numpyro_diffusion.demo import load_demo_models
from numpyro_diffusion.infer import AnnealedMCMC
from numpyro_diffusion.primitives import diffusion_prior


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


def measure(chains: int, num_levels: int, steps: int, repeats: int, step_size: float = 1e-3):
    ring_model, _ = load_demo_models()

    def program():
        diffusion_prior("x", ring_model)

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
    levels = jnp.asarray(sampler.resolve_levels(ring_model.schedule))
    walk = hand_written_walk(ring_model, levels, steps, step_size)
    x0 = jax.random.normal(jax.random.PRNGKey(1), (chains, 2))

    def run_library(seed):
        sampler.run(jax.random.PRNGKey(seed))
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
        chains=chains,
        levels=num_levels,
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
        gradient_evaluations=chains * num_levels * (steps + 1),
    )


def markdown(r: dict) -> str:
    verdict = "meets" if r["median_ratio"] <= r["target_ratio"] else "misses"
    return "\n".join(
        [
            "# Overhead of AnnealedMCMC against a hand-written BlackJAX scan",
            "",
            f"Device: {r['device']}. MALA, {r['chains']} chains, {r['levels']} levels x "
            f"{r['steps_per_level']} steps, fixed step size, no predictor; the shipped ring "
            f"energy model (residual MLP). {r['repeats']} interleaved repeats.",
            "",
            "| | AnnealedMCMC (NumPyro model) | hand-written scan | ratio |",
            "|---|---|---|---|",
            f"| steady state, median (s) | {r['median_library_s']:.3f} | "
            f"{r['median_hand_written_s']:.3f} | **{r['median_ratio']:.3f}** |",
            f"| compilation (s) | {r['compile_library_s']:.2f} | "
            f"{r['compile_hand_written_s']:.2f} | |",
            "",
            f"The ratio {verdict} the target of {r['target_ratio']}. The sampler traced its walk "
            f"{r['library_traces']} time(s) over {r['repeats'] + 1} runs (1 means no "
            "recompilation).",
            "",
        ]
    )


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=1000)
    parser.add_argument("--levels", type=int, default=100)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="tiny settings (smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.chains, args.levels, args.steps, args.repeats = 16, 5, 2, 2
    result = measure(args.chains, args.levels, args.steps, args.repeats)
    name = "overhead_quick" if args.quick else "overhead"
    write_results(args.out, name, result, markdown(result))
    np.testing.assert_equal(result["library_traces"], 1)
    return result


if __name__ == "__main__":
    main()
