"""The Reduce, Reuse, Recycle 2D table: composition tasks, five samplers, two parameterizations.

Tasks (Du et al., RESEARCH.md): ring x bar (product), left or right bar (mixture), a box
of half-width 0.7 without one of 0.3 (negation, ``1.3 E_outer - 0.3 E_inner``). Every
component is trained as an eps model and as an energy model, for several seeds. Samplers
at about equal network-evaluation budgets (``--budget`` gradient evaluations per chain):

- reverse diffusion: every level of the ``--budget``-level schedule, one evaluation each;
- ULA, MALA: ``budget / 10`` levels, a predictor step and 9 kernel steps per level;
- U-HMC, HMC: ``budget / 10`` levels, a predictor step and 3 steps of 3 leapfrogs;
- MALA and HMC with the line-integral energy (on eps models too): 4 MALA steps of 2
  gradients, or 1 HMC step of 3 leapfrogs of 3 gradients, a level;
- annealed SMC (energy models): one weight and 3 HMC steps of 3 leapfrogs a level.

Walks start at the highest level with ``alpha_bar >= 1e-3``, as every walk does.

Metrics against the true composed density (box densities get 1 % outer mass so that
every sample has a finite log-likelihood): mean log-likelihood of the samples, MMD and
the 2-Wasserstein distance between 2,000 samples and 2,000 exact draws. Score-only (eps)
models cannot run MALA, HMC or a mixture; those cells are "n/a".

    python benchmarks/composition_2d.py                 # full table (CPU: about an hour)
    python benchmarks/composition_2d.py --quick         # smoke test, seconds
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import numpyro_diffusion as nd
from numpyro_diffusion.errors import EnergyUnavailableError
from numpyro_diffusion.infer import AnnealedMCMC, AnnealedSMC
from numpyro_diffusion.metrics import mmd, wasserstein2
from numpyro_diffusion.tasks.toy2d import bar, box, grid_density, ring

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import RESULTS, device_name, write_results  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

TOYS = {
    "ring": ring(radius=0.5, std=0.03),
    "bar": bar(0.0, 0.2, 1.0),
    "left": bar(-0.2, 0.05, 1.0),
    "right": bar(0.2, 0.05, 1.0),
    "outer": box((0.0, 0.0), (0.7, 0.7)),
    "inner": box((0.0, 0.0), (0.3, 0.3)),
}
NEGATION_ALPHA = 0.3
SAMPLERS = [  # name, kernel, steps per level (None: reverse diffusion), options
    ("reverse diffusion", "ula", None, {}),
    ("ULA", "ula", 9, {}),
    ("U-HMC", "uhmc", 3, {}),
    ("MALA", "mala", 9, {}),
    ("HMC", "hmc", 3, {}),
    # the line integral's inner points are gradients too: MALA's 3-point rule costs 2 a
    # step, HMC's 4-point rule 3 a leapfrog step
    ("MALA, line integral", "mala", 4, {"energy": "line_integral"}),
    ("HMC, line integral", "hmc", 1, {"energy": "line_integral"}),
    # a weight costs one evaluation a level, the kernel steps the other nine
    ("annealed SMC (HMC)", "hmc", 3, {"smc": True}),
]


def _prior_and_factors(terms):
    """A NumPyro model: the first model as the prior, the others as weighted factors."""

    def model():
        (w0, m0), rest = terms[0], terms[1:]
        x = nd.diffusion_prior("x", m0)
        if w0 != 1.0:
            nd.diffusion_factor("prior_power", m0, x, weight=w0 - 1.0)
        for i, (w, m) in enumerate(rest):
            nd.diffusion_factor(f"f{i}", m, x, weight=w)

    return model


def task_programs(models: dict[str, Any]) -> dict[str, Any]:
    """The compositions as NumPyro programs over the trained components (those whose
    components are all in ``models``)."""

    def mixture_model():
        nd.diffusion_prior("x", nd.mixture([models["left"], models["right"]]))

    programs = {
        "product": lambda: _prior_and_factors([(1.0, models["ring"]), (1.0, models["bar"])])
    }
    if "left" in models:
        programs["mixture"] = lambda: mixture_model
        programs["negation"] = lambda: _prior_and_factors(
            [(1.0 + NEGATION_ALPHA, models["outer"]), (-NEGATION_ALPHA, models["inner"])]
        )
    return {task: build() for task, build in programs.items()}


def true_densities() -> dict[str, Any]:
    t = {k: v.log_prob for k, v in TOYS.items()}
    return {
        "product": grid_density(lambda x: t["ring"](x) + t["bar"](x)),
        "mixture": grid_density(lambda x: jnp.logaddexp(t["left"](x), t["right"](x))),
        "negation": grid_density(
            lambda x: (1 + NEGATION_ALPHA) * t["outer"](x) - NEGATION_ALPHA * t["inner"](x)
        ),
    }


def train_component(name, parameterization, seed, args, cache):
    path = os.path.join(cache, f"{name}-{parameterization}-{seed}-{args.train_steps}.npz")
    if os.path.exists(path):
        return nd.load(path)
    base = nd.ResidualMLP(hidden=args.hidden, num_blocks=args.blocks)
    network = nd.EnergyNetwork(base, "dae") if parameterization == "energy" else base
    key = jax.random.PRNGKey(1000 * seed + sorted(TOYS).index(name))
    data = TOYS[name].sample(jax.random.fold_in(key, 1), 100_000)
    model = nd.train(
        network,
        data,
        schedule=nd.VPSchedule.cosine(args.budget),
        parameterization=parameterization,
        num_steps=args.train_steps,
        batch_size=1000,
        optimizer=optax.adam(1e-3),
        rng_key=key,
        ema_decay=0.999,
        progress_bar=not args.quiet,
    )
    nd.save(path, model)
    return model


def run_sampler(program, kernel, steps, options, args, key, schedule):
    # every walk starts at the schedule's first_conditioned_level (below the cosine
    # schedule's singular top levels); the budget spends 10 gradients per level
    if steps is None:
        levels, steps = None, 0
    else:
        levels = min(args.budget // 10, schedule.first_conditioned_level + 1)
    options = dict(options)
    if options.pop("smc", False):
        sampler = AnnealedSMC(
            program, kernel, args.chains, steps, levels=levels, progress_bar=False, **options
        )
    else:
        sampler = AnnealedMCMC(
            program, kernel, args.chains, steps, levels=levels, progress_bar=False, **options
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sampler.run(key)
    return np.asarray(sampler.get_samples()["x"]), sampler.num_divergent


def evaluate(args) -> dict[str, Any]:
    cache = args.cache
    os.makedirs(cache, exist_ok=True)
    truths = true_densities()
    references = {
        task: np.asarray(d.sample(jax.random.PRNGKey(7), args.chains)) for task, d in truths.items()
    }
    records = []
    clouds = {}
    for seed in range(args.seeds):
        for parameterization in ("eps", "energy"):
            # the smoke test runs the product alone (every sampler's code path)
            needed = ("ring", "bar") if args.quick else tuple(TOYS)
            models = {
                name: train_component(name, parameterization, seed, args, cache) for name in needed
            }
            for task, program in task_programs(models).items():
                for sampler_name, kernel, steps, options in SAMPLERS:
                    if options.get("energy") and parameterization == "energy":
                        continue  # the line integral is for models without an energy
                    record = dict(
                        task=task,
                        parameterization=parameterization,
                        seed=seed,
                        sampler=sampler_name,
                    )
                    start = time.perf_counter()
                    try:
                        x, divergent = run_sampler(
                            program,
                            kernel,
                            steps,
                            options,
                            args,
                            jax.random.PRNGKey(seed),
                            models["ring"].schedule,
                        )
                    except EnergyUnavailableError:
                        records.append(record | dict(available=False))
                        continue
                    n = min(len(x), len(references[task]))
                    record |= dict(
                        available=True,
                        log_lik=float(jnp.mean(truths[task].log_prob(x))),
                        mmd=float(mmd(x[:n], references[task][:n])),
                        w2=wasserstein2(x[:n], references[task][:n]),
                        divergences=int(divergent),
                        seconds=time.perf_counter() - start,
                    )
                    records.append(record)
                    if seed == 0:
                        clouds[(task, parameterization, sampler_name)] = x
                    if not args.quiet:
                        print(
                            f"seed {seed} {parameterization:>6} {task:>8} {sampler_name:>17}: "
                            f"log-lik {record['log_lik']:7.3f}  MMD {record['mmd']:.4f}  "
                            f"W2 {record['w2']:.3f}",
                            file=sys.stderr,
                        )
    reference_log_lik = {
        task: float(jnp.mean(truths[task].log_prob(references[task]))) for task in truths
    }
    return dict(records=records, reference_log_lik=reference_log_lik, clouds=clouds, truths=truths)


def summarise(records: list[dict]) -> list[dict]:
    rows = []
    keys = sorted(
        {(r["task"], r["parameterization"], r["sampler"]) for r in records},
        key=lambda k: (k[0], k[1], [s[0] for s in SAMPLERS].index(k[2])),
    )
    for task, parameterization, sampler in keys:
        group = [
            r
            for r in records
            if (r["task"], r["parameterization"], r["sampler"]) == (task, parameterization, sampler)
            and r["available"]
        ]
        row = dict(task=task, parameterization=parameterization, sampler=sampler, seeds=len(group))
        for metric in ("log_lik", "mmd", "w2"):
            values = np.array([r[metric] for r in group])
            row[metric] = (float(values.mean()), float(values.std())) if len(values) else None
        rows.append(row)
    return rows


def markdown(rows, reference_log_lik, args, device: str) -> str:
    def cell(v, fmt):
        return "n/a" if v is None else f"{v[0]:{fmt}} ± {v[1]:{fmt}}"

    lines = [
        "# Composition benchmark (Reduce, Reuse, Recycle 2D tasks)",
        "",
        f"Device: {device}. {args.seeds} training seeds per component "
        f"({args.train_steps} steps, residual MLP {args.blocks}x{args.hidden}); {args.chains} "
        f"chains; about {args.budget} network gradient evaluations per chain for every "
        "sampler. Mean ± standard deviation over seeds. Log-likelihood under the true "
        "composed density (higher is better, up to the exact draws' value); MMD and W2 "
        "against exact draws (lower is better).",
        "",
        "| task | parameterization | sampler | log-likelihood | MMD | W2 |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['parameterization']} | {r['sampler']} | "
            f"{cell(r['log_lik'], '.3f')} | {cell(r['mmd'], '.4f')} | {cell(r['w2'], '.3f')} |"
        )
    lines += [
        "",
        "Log-likelihood of exact draws: "
        + ", ".join(f"{task} {value:.3f}" for task, value in reference_log_lik.items()),
    ]
    return "\n".join(lines) + "\n"


def plot(clouds, truths, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(truths)
    fig, axes = plt.subplots(
        len(tasks),
        1 + len(SAMPLERS),
        figsize=(3 * (1 + len(SAMPLERS)), 3 * len(tasks)),
        squeeze=False,
        constrained_layout=True,
    )
    for i, task in enumerate(tasks):
        d = truths[task]
        extent = (d.xs[0], d.xs[-1], d.xs[0], d.xs[-1])
        axes[i, 0].imshow(np.exp(d.log_density).T, origin="lower", extent=extent, cmap="magma")
        axes[i, 0].set_title(f"{task}: truth")
        for j, (name, *_) in enumerate(SAMPLERS, start=1):
            for parameterization in ("energy", "eps"):  # eps for the line-integral rows
                x = clouds.get((task, parameterization, name))
                if x is not None:
                    axes[i, j].scatter(x[:, 0], x[:, 1], s=1, alpha=0.4)
                    axes[i, j].set_title(f"{name} ({parameterization})", fontsize=9)
                    break
        for ax in axes[i]:
            ax.set(xlim=(-1.2, 1.2), ylim=(-1.2, 1.2), aspect="equal")
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=3000)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--chains", type=int, default=2000)
    parser.add_argument(
        "--budget",
        type=int,
        default=1000,
        help="network gradient evaluations per chain (and schedule length)",
    )
    parser.add_argument("--out", default=RESULTS)
    parser.add_argument("--cache", default=os.path.join(HERE, ".cache"))
    parser.add_argument("--quick", action="store_true", help="tiny settings (smoke test)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.train_steps, args.chains, args.budget = 1, 20, 64, 40
        args.hidden, args.blocks = 16, 1
    device = device_name()
    out = evaluate(args)
    rows = summarise(out["records"])
    name = "composition_2d_quick" if args.quick else "composition_2d"
    result = dict(
        device=device,
        settings=vars(args),
        rows=rows,
        records=out["records"],
        reference_log_lik=out["reference_log_lik"],
    )
    write_results(args.out, name, result, markdown(rows, out["reference_log_lik"], args, device))
    plot(out["clouds"], out["truths"], os.path.join(args.out, f"{name}.png"))
    return result


if __name__ == "__main__":
    main()
