"""The Reduce, Reuse, Recycle 2D table: composition tasks, every sampler, two parameterizations.

Tasks (Du et al., RESEARCH.md): ring x bar (product), left or right bar (mixture), a box
of half-width 0.7 without one of 0.3 (negation, ``1.3 E_outer - 0.3 E_inner``). Components
are trained as in the paper (residual MLP 4 blocks x 128, Adam 1e-3, batch 1,000, 15,000
steps, EMA 0.999, ``--levels``-level cosine schedule) as eps models and as energy models,
for ``--seeds`` seeds (eps mixtures are n/a, so the two bars are trained as energy models
only). Samplers at the paper's budget of 10 network gradients per level:

- reverse diffusion: one evaluation per level (a tenth of the others' budget);
- ULA, MALA: a predictor step and 9 kernel steps per level;
- U-HMC, HMC: a predictor step and 3 steps of 3 leapfrogs;
- MALA and HMC with the line-integral energy (on eps models too): 4 MALA steps of 2
  gradients, or 1 HMC step of 3 leapfrogs of 3 gradients, a level;
- annealed SMC (energy models): one weight and 3 HMC steps of 3 leapfrogs a level.

Each MCMC sampler runs twice: with the paper's fixed step sizes (ULA and MALA 0.001,
U-HMC and HMC 0.03, 3 leapfrogs, damping 0.5, unit mass) and with the library's defaults
(per-level adaptation for MALA and HMC, the ``sigma_t`` rule for ULA and U-HMC). Walks
start at the highest level with ``alpha_bar >= 1e-3``, as every walk does.

Metrics against the true composed density (box densities get 1 % outer mass so that
every sample has a finite log-likelihood): mean log-likelihood of the samples, MMD and
the 2-Wasserstein distance between 2,000 samples and 2,000 exact draws; mean +- standard
error over seeds. Score-only (eps) models cannot run MALA, HMC, SMC or a mixture; those
cells are "n/a".

Trained components and every finished run are cached (``--cache``, by default under
``~/.cache/numpyro_diffusion``): a stopped run resumes where it was, and the table is
written from the seeds finished so far.

    python benchmarks/composition_2d.py > composition.log 2>&1 &   # full table (CPU: hours)
    python benchmarks/composition_2d.py --report    # the table from the runs finished so far
    python benchmarks/composition_2d.py --train-only   # every component, for all seeds, at once
    python benchmarks/composition_2d.py --quick                     # smoke test
"""

from __future__ import annotations

import argparse
import functools
import json
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
from numpyro_diffusion.metrics import mean_and_standard_error, mmd, wasserstein2
from numpyro_diffusion.tasks.toy2d import bar, box, grid_density, ring

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import RESULTS, device_name, write_results  # noqa: E402

CACHE = os.path.join(os.path.expanduser("~"), ".cache", "numpyro_diffusion", "composition_2d")

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
# the paper's 2D notebook: fixed steps, unit mass, 3 leapfrogs, momentum damping 0.5
PAPER_STEP_SIZES = {"ula": 0.001, "mala": 0.001, "uhmc": 0.03, "hmc": 0.03}
SETTINGS = ("paper steps", "library defaults")
COMPONENTS = {  # the bars make only the mixture, which needs energies
    "eps": ("ring", "bar", "outer", "inner"),
    "energy": tuple(TOYS),
}


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
    """The compositions as NumPyro programs over the trained components, each task whose
    components are all in ``models``."""

    def mixture_model():
        nd.diffusion_prior("x", nd.mixture([models["left"], models["right"]]))

    builders = {
        ("ring", "bar"): (
            "product",
            lambda: _prior_and_factors([(1.0, models["ring"]), (1.0, models["bar"])]),
        ),
        ("left", "right"): ("mixture", lambda: mixture_model),
        ("outer", "inner"): (
            "negation",
            lambda: _prior_and_factors(
                [(1.0 + NEGATION_ALPHA, models["outer"]), (-NEGATION_ALPHA, models["inner"])]
            ),
        ),
    }
    return {
        task: build()
        for components, (task, build) in builders.items()
        if all(name in models for name in components)
    }


def true_densities() -> dict[str, Any]:
    t = {k: v.log_prob for k, v in TOYS.items()}
    return {
        "product": grid_density(lambda x: t["ring"](x) + t["bar"](x)),
        "mixture": grid_density(lambda x: jnp.logaddexp(t["left"](x), t["right"](x))),
        "negation": grid_density(
            lambda x: (1 + NEGATION_ALPHA) * t["outer"](x) - NEGATION_ALPHA * t["inner"](x)
        ),
    }


def _slug(*parts) -> str:
    """A file name for a run: ``0-energy-product-MALA_line_integral-paper_steps``."""
    drop = {ord(c): None for c in ",()"}
    return "-".join(str(p).replace(" ", "_").translate(drop) for p in parts)


def component_path(models_dir: str, name: str, parameterization: str, seed: int) -> str:
    return os.path.join(models_dir, f"{name}-{parameterization}-{seed}.npz")


def train_components(
    pairs: list[tuple[str, int]], parameterization: str, args, models_dir: str
) -> None:
    """Components ``(name, seed)`` trained together in one program (each model is the
    one its key and data give alone, to float rounding), resumable if stopped."""
    paths = [component_path(models_dir, name, parameterization, seed) for name, seed in pairs]
    base = nd.ResidualMLP(hidden=args.hidden, num_blocks=args.blocks)
    network = nd.EnergyNetwork(base, "dae") if parameterization == "energy" else base
    keys = jnp.stack([jax.random.PRNGKey(1000 * s + sorted(TOYS).index(n)) for n, s in pairs])
    data = jnp.stack(
        [
            TOYS[n].sample(jax.random.fold_in(k, 1), 100_000)
            for (n, _), k in zip(pairs, keys, strict=True)
        ]
    )
    if not args.quiet:
        print(f"training {parameterization} components {pairs}", file=sys.stderr)
    state = os.path.join(
        models_dir, f"{parameterization}-{'-'.join(f'{n}{s}' for n, s in pairs)}.state.npz"
    )
    models = nd.train(
        network,
        data,
        schedule=nd.VPSchedule.cosine(args.levels),
        parameterization=parameterization,
        num_steps=args.train_steps,
        batch_size=1000,
        optimizer=optax.adam(1e-3),
        rng_key=keys,
        ema_decay=0.999,
        progress_bar=not args.quiet,
        resume_path=state,
        save_every=1000,
    )
    for path, model in zip(paths, models, strict=True):
        nd.save(path, model)
    os.remove(state)


def missing_components(names, parameterization: str, seeds, models_dir: str):
    """``(name, seed)`` of the components not trained yet."""
    return [
        (name, s)
        for s in seeds
        for name in names
        if not os.path.exists(component_path(models_dir, name, parameterization, s))
    ]


def trained_components(names, parameterization: str, seed: int, args, models_dir: str):
    """This seed's components; if one is missing, every missing component of this and
    the later seeds trains in one program."""
    if missing_components(names, parameterization, [seed], models_dir):
        missing = missing_components(names, parameterization, range(seed, args.seeds), models_dir)
        train_components(missing, parameterization, args, models_dir)
    return {
        name: nd.load(component_path(models_dir, name, parameterization, seed)) for name in names
    }


def sampler_settings(steps: int | None, index: int, args) -> tuple[str, ...]:
    """The step-size settings a sampler runs under; the smoke test alternates them
    over the samplers (each code path once, at the cost of one setting)."""
    if steps is None:
        return ("-",)  # reverse diffusion has no step size
    return (SETTINGS[index % 2],) if args.quick else SETTINGS


def run_sampler(program, kernel, steps, options, setting, args, key):
    """Samples ``(chains, 2)`` and divergences of one sampler walking every level from
    the schedule's ``first_conditioned_level`` down."""
    options = dict(options)
    if steps is None:
        steps = 0
    elif setting == "paper steps":
        options["step_size"] = PAPER_STEP_SIZES[kernel]
    sampler_class = AnnealedSMC if options.pop("smc", False) else AnnealedMCMC
    sampler = sampler_class(program, kernel, args.chains, steps, progress_bar=False, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sampler.run(key)
    return np.asarray(sampler.get_samples()["x"]), sampler.num_divergent


def planned_runs(models: dict[str, Any], parameterization: str, args):
    """``(task, sampler name, setting, run)`` for every run on these components;
    ``run(key)`` returns the samples and divergences."""
    for task, program in task_programs(models).items():
        for i, (name, kernel, steps, options) in enumerate(SAMPLERS):
            if options.get("energy") and parameterization == "energy":
                continue  # the line integral is for models without an energy
            for setting in sampler_settings(steps, i, args):
                run = functools.partial(run_sampler, program, kernel, steps, options, setting, args)
                yield task, name, setting, run


def measure(run, key, truth, reference) -> tuple[dict, np.ndarray | None]:
    """Metrics of one run's samples against the exact density and draws."""
    start = time.perf_counter()
    try:
        x, divergent = run(key)
    except EnergyUnavailableError:
        return dict(available=False), None
    n = min(len(x), len(reference))
    return dict(
        available=True,
        log_lik=float(jnp.mean(truth.log_prob(x))),
        mmd=float(mmd(x[:n], reference[:n])),
        w2=wasserstein2(x[:n], reference[:n]),
        divergences=int(divergent),
        seconds=time.perf_counter() - start,
    ), x


def read_run(stem: str) -> tuple[dict, np.ndarray | None]:
    """A finished run's record and, for seed 0, its samples."""
    with open(f"{stem}.json") as f:
        record = json.load(f)
    return record, np.load(f"{stem}.npy") if os.path.exists(f"{stem}.npy") else None


def write_run(stem: str, record: dict, samples: np.ndarray | None) -> None:
    with open(f"{stem}.json", "w") as f:
        json.dump(record, f)
    if samples is not None:
        np.save(f"{stem}.npy", samples)


def models_directory(args) -> str:
    return os.path.join(
        args.cache, f"{args.blocks}x{args.hidden}-{args.train_steps}steps-{args.levels}levels"
    )


def evaluate(args) -> dict[str, Any]:
    """Every seed's runs, each read from the cache when it finished before."""
    models_dir = models_directory(args)
    runs_dir = os.path.join(models_dir, f"runs-{args.chains}chains")
    os.makedirs(runs_dir, exist_ok=True)
    truths = true_densities()
    references = {
        task: np.asarray(d.sample(jax.random.PRNGKey(7), args.chains)) for task, d in truths.items()
    }
    records, clouds = [], {}
    order = reversed if args.reverse else list
    for seed in order(range(args.first_seed, args.seeds)):
        for parameterization in order(("eps", "energy")):
            # the smoke test runs the product alone (every sampler's code path)
            needed = ("ring", "bar") if args.quick else COMPONENTS[parameterization]
            trained = [
                os.path.exists(component_path(models_dir, name, parameterization, seed))
                for name in needed
            ]
            if args.report and not all(trained):
                continue
            models = trained_components(needed, parameterization, seed, args, models_dir)
            for task, name, setting, run in order(
                list(planned_runs(models, parameterization, args))
            ):
                run_key = (parameterization, task, name, setting)
                stem = os.path.join(runs_dir, _slug(seed, *run_key))
                if os.path.exists(f"{stem}.json"):
                    record, x = read_run(stem)
                elif args.report:
                    continue
                else:
                    metrics, x = measure(
                        run, jax.random.PRNGKey(seed), truths[task], references[task]
                    )
                    record = dict(
                        zip(
                            ("parameterization", "task", "sampler", "setting"), run_key, strict=True
                        ),
                        seed=seed,
                        **metrics,
                    )
                    write_run(stem, record, x if seed == 0 else None)
                records.append(record)
                if x is not None:
                    clouds[(task, parameterization, name, setting)] = x
                if not args.quiet and record["available"]:
                    print(
                        f"seed {seed} {parameterization:>6} {task:>8} {name:>19} ({setting}): "
                        f"log-lik {record['log_lik']:7.3f}  MMD {record['mmd']:.4f}  "
                        f"W2 {record['w2']:.3f}  {record['seconds']:.0f} s",
                        file=sys.stderr,
                    )
    reference_log_lik = {
        task: float(jnp.mean(truths[task].log_prob(references[task]))) for task in truths
    }
    return dict(records=records, reference_log_lik=reference_log_lik, clouds=clouds, truths=truths)


def summarise(records: list[dict]) -> list[dict]:
    """One row per (task, parameterization, sampler, setting) that ran: mean and standard
    error over seeds of each metric."""
    order = [s[0] for s in SAMPLERS]
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        if r["available"]:
            key = (r["task"], r["parameterization"], r["sampler"], r["setting"])
            groups.setdefault(key, []).append(r)
    rows = []
    for key in sorted(groups, key=lambda k: (k[0], k[1], order.index(k[2]), k[3])):
        group = groups[key]
        row = dict(zip(("task", "parameterization", "sampler", "setting"), key, strict=True))
        row["seeds"] = len(group)
        for metric in ("log_lik", "mmd", "w2", "divergences"):
            row[metric] = mean_and_standard_error([r[metric] for r in group])
        rows.append(row)
    return rows


def _cell(v, fmt):
    mean, se = v
    return f"{mean:{fmt}}" if np.isnan(se) else f"{mean:{fmt}} ± {se:{fmt}}"


def overview(rows, reference_log_lik) -> list[str]:
    """The table at a glance: one line per sampler and steps, one column per task and
    parameterization, each cell log-likelihood / MMD (score-only models' MALA and HMC
    are the line-integral rows)."""
    present = {(r["task"], r["parameterization"]) for r in rows}
    columns = [(t, p) for t in reference_log_lik for p in ("eps", "energy") if (t, p) in present]
    found = {(r["task"], r["parameterization"], r["sampler"], r["setting"]): r for r in rows}
    lines = [
        "| sampler | steps | " + " | ".join(f"{t} ({p})" for t, p in columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for name, _, steps, _ in SAMPLERS:
        if name.endswith(", line integral"):
            continue
        for setting in ("-",) if steps is None else SETTINGS:
            cells = []
            for task, parameterization in columns:
                r = found.get((task, parameterization, name, setting)) or found.get(
                    (task, parameterization, f"{name}, line integral", setting)
                )
                cells.append(
                    "n/a"
                    if r is None
                    else f"{_cell(r['log_lik'], '.2f')} / {_cell(r['mmd'], '.3f')}"
                )
            label = f"{name} (eps: line integral)" if name in ("MALA", "HMC") else name
            lines.append(f"| {label} | {setting} | " + " | ".join(cells) + " |")
    exact = " | ".join(f"{reference_log_lik[t]:.2f} / 0" for t, _ in columns)
    return lines + [f"| exact draws | | {exact} |"]


def _as_run(name: str, parameterization: str) -> str:
    """A sampler's name as it ran: score-only models' MALA and HMC are the line-integral
    samplers."""
    return (
        f"{name}, line integral" if parameterization == "eps" and name in ("MALA", "HMC") else name
    )


def paired_differences(records, columns, pairs) -> list[str]:
    """Per pair of runs ``(a, b)`` and column ``(task, parameterization)``: the mean ±
    standard error over seeds of ``log_lik(a) - log_lik(b)`` on the same seed's
    components, and on how many seeds ``a`` was better."""
    by_run = {
        (r["seed"], r["task"], r["parameterization"], r["sampler"], r["setting"]): r["log_lik"]
        for r in records
        if r["available"]
    }
    seeds = sorted({r["seed"] for r in records})
    lines = [
        "| a - b | " + " | ".join(f"{t} ({p})" for t, p in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for label, (name_a, setting_a), (name_b, setting_b) in pairs:
        cells = []
        for task, param in columns:
            a = [by_run.get((s, task, param, _as_run(name_a, param), setting_a)) for s in seeds]
            b = [by_run.get((s, task, param, _as_run(name_b, param), setting_b)) for s in seeds]
            d = [x - y for x, y in zip(a, b, strict=True) if x is not None and y is not None]
            if not d:
                cells.append("n/a")
                continue
            wins = sum(v > 0 for v in d)
            mean, se = mean_and_standard_error(d)
            spread = "" if np.isnan(se) else f" ± {se:.2f}"
            cells.append(f"{mean:+.2f}{spread} ({wins}/{len(d)})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def paired_comparisons(records, reference_log_lik) -> list[str]:
    """The paper's questions as paired differences of log-likelihood."""
    present = {(r["task"], r["parameterization"]) for r in records if r["available"]}
    columns = [(t, p) for t in reference_log_lik for p in ("eps", "energy") if (t, p) in present]
    rd = ("reverse diffusion", "-")
    mcmc = [
        (n, st) for n, _, steps, o in SAMPLERS if steps and not o.get("energy") for st in SETTINGS
    ]
    against_rd = [(f"{n} ({st}) - reverse diffusion", (n, st), rd) for n, st in mcmc]
    corrected = [
        (f"{a} - {b} ({st})", (a, st), (b, st))
        for a, b in (("MALA", "ULA"), ("HMC", "U-HMC"))
        for st in SETTINGS
    ]
    settings = [
        (f"{n}: library defaults - paper steps", (n, SETTINGS[1]), (n, SETTINGS[0]))
        for n, _, steps, o in SAMPLERS
        if steps and not o.get("energy")
    ]
    return [
        "Paired differences of log-likelihood (mean ± standard error over seeds of the "
        "same seed's components under two samplers; in brackets, on how many seeds the "
        "first was better). Score-only models' MALA and HMC are the line-integral samplers.",
        "",
        "Every sampler against reverse diffusion:",
        "",
        *paired_differences(records, columns, against_rd),
        "",
        "Metropolis correction (same steps setting):",
        "",
        *paired_differences(records, columns, corrected),
        "",
        "The library's defaults against the paper's fixed steps:",
        "",
        *paired_differences(records, columns, settings),
    ]


def markdown(rows, records, reference_log_lik, args, device: str) -> str:

    seeds = sorted({r["seeds"] for r in rows})
    lines = [
        "# Composition benchmark (Reduce, Reuse, Recycle 2D tasks)",
        "",
        f"Device: {device}. Components: residual MLP {args.blocks}x{args.hidden}, "
        f"{args.train_steps} training steps, {args.levels}-level cosine schedule; "
        f"{seeds[0]}{'' if len(seeds) == 1 else f' to {seeds[-1]}'} of {args.seeds} training "
        f"seeds finished per row. {args.chains} "
        "chains; 10 network gradients per chain per level for every sampler but reverse "
        "diffusion (1). Mean ± standard error over seeds. Log-likelihood under the true "
        "composed density (higher is better, up to the exact draws' value); MMD and W2 "
        "against exact draws (lower is better). Steps: the paper's fixed step sizes or "
        "the library's defaults. Not in the table (n/a): score-only (eps) models with "
        "MALA, HMC, SMC or a mixture.",
        "",
        "At a glance, log-likelihood / MMD:",
        "",
        *overview(rows, reference_log_lik),
        "",
        *paired_comparisons(records, reference_log_lik),
        "",
        "Every metric:",
        "",
        "| task | parameterization | sampler | steps | log-likelihood | MMD | W2 | divergences |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['parameterization']} | {r['sampler']} | {r['setting']} | "
            f"{_cell(r['log_lik'], '.3f')} | {_cell(r['mmd'], '.4f')} | {_cell(r['w2'], '.3f')} | "
            f"{r['divergences'][0]:.0f} |"
        )
    lines += [
        "",
        "Log-likelihood of exact draws: "
        + ", ".join(f"{task} {value:.3f}" for task, value in reference_log_lik.items()),
    ]
    return "\n".join(lines) + "\n"


def plot(clouds, truths, path):
    """Seed 0's samples: one row per task, the truth and then each sampler (energy
    models where they ran, the library's defaults)."""
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
            candidates = [
                (p, s) for p in ("energy", "eps") for s in ("library defaults", "-", "paper steps")
            ]
            for parameterization, setting in candidates:
                x = clouds.get((task, parameterization, name, setting))
                if x is not None:
                    axes[i, j].scatter(x[:, 0], x[:, 1], s=1, alpha=0.4)
                    axes[i, j].set_title(f"{name}\n({parameterization}, {setting})", fontsize=8)
                    break
        for ax in axes[i]:
            ax.set(xlim=(-1.2, 1.2), ylim=(-1.2, 1.2), aspect="equal")
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="start at this seed (a second process can take the later seeds)",
    )
    parser.add_argument("--train-steps", type=int, default=15_000)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--chains", type=int, default=2000)
    parser.add_argument(
        "--levels", type=int, default=100, help="noise levels of the schedule (10 gradients each)"
    )
    parser.add_argument("--out", default=RESULTS)
    parser.add_argument("--cache", default=CACHE)
    parser.add_argument("--quick", action="store_true", help="tiny settings (smoke test)")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument(
        "--report", action="store_true", help="write the table from finished runs only"
    )
    parser.add_argument(
        "--reverse",
        action="store_true",
        help="take the runs in reverse order (a second process meets the first halfway)",
    )
    parser.add_argument(
        "--train-only", action="store_true", help="train every missing component, run nothing"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.train_steps, args.chains, args.levels = 1, 20, 64, 4
        args.hidden, args.blocks = 16, 1
    if args.train_only:
        models_dir = models_directory(args)
        os.makedirs(models_dir, exist_ok=True)
        for parameterization, names in COMPONENTS.items():
            missing = missing_components(names, parameterization, range(args.seeds), models_dir)
            if missing:
                train_components(missing, parameterization, args, models_dir)
        return {}
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
    write_results(
        args.out,
        name,
        result,
        markdown(rows, out["records"], out["reference_log_lik"], args, device),
    )
    plot(out["clouds"], out["truths"], os.path.join(args.out, f"{name}.png"))
    return result


if __name__ == "__main__":
    main()
