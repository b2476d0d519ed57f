"""Plug-and-play on the 8x8 digits: inpainting, two constraints and the guidance trade-off.

Uses the shipped class-conditional U-Nets (eps and energy, ``p_uncond = 0.1``) and the
digit classifier (scripts/train_digit_models.py). Three parts:

- ``inpainting``: the lower half of held-out digits is missing; annealed MCMC (HMC on
  the energy model, ULA on the eps model), ``plug_and_play`` and replacement reverse
  diffusion are compared by the PSNR of their draws on the missing pixels.
- ``constraints``: an unconditional prior times a classifier's ``p(y = d | x)`` (accuracy
  by an independently trained classifier, diversity against held-out digits of that
  class), and times Graikos' mirror-symmetry factor.
- ``cfg``: classifier-free guidance for w in {0, 0.1, 0.3, 0.5, 1, 2, 4}: Frechet
  distance in the classifier's feature space against held-out digits and a classifier
  score (Inception-Score-like), as in Ho & Salimans' table.

    python benchmarks/digits.py                  # everything (CPU: about 15 minutes)
    python benchmarks/digits.py --only cfg
    python benchmarks/digits.py --quick          # smoke test
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_diffusion.infer import AnnealedMCMC, plug_and_play
from numpyro_diffusion.metrics import psnr
from numpyro_diffusion.tasks.digit_experiments import (
    cfg_tradeoff,
    classifier_constraint_model,
    diversity,
    inpaint_annealed,
    inpaint_plug_and_play,
    inpaint_replacement,
    inpainting_psnr,
    lower_half_mask,
    symmetry_error,
    symmetry_model,
)
from numpyro_diffusion.tasks.digits import load_digit_models, load_digits_data, train_classifier

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import RESULTS, device_name, write_results  # noqa: E402

PARTS = ("inpainting", "constraints", "cfg")


def held_out_subset(per_class: int) -> tuple[np.ndarray, np.ndarray]:
    held = load_digits_data("held_out")
    idx = np.concatenate([np.flatnonzero(held.labels == d)[:per_class] for d in range(10)])
    return held.images[idx], held.labels[idx]


def run_inpainting(models, args) -> tuple[list[dict], str]:
    images, _ = held_out_subset(args.inpaint_per_class)
    mask = lower_half_mask()
    key = jax.random.PRNGKey(args.seed)
    k = args.samples
    methods = [
        (
            "annealed HMC (energy)",
            lambda key: inpaint_annealed(
                models.energy,
                key,
                images,
                mask,
                kernel="hmc",
                num_chains=k,
                levels=args.levels,
                steps_per_level=args.steps_per_level,
                progress_bar=not args.quiet,
            ),
        ),
        (
            "annealed ULA (eps)",
            lambda key: inpaint_annealed(
                models.eps,
                key,
                images,
                mask,
                kernel="ula",
                num_chains=k,
                levels=args.levels,
                steps_per_level=3 * args.steps_per_level,
                progress_bar=not args.quiet,
            ),
        ),
        (
            "plug-and-play (eps)",
            lambda key: (
                inpaint_plug_and_play(
                    models.eps, key, images, mask, num_samples=k, num_steps=args.pnp_steps
                ),
                0,
            ),
        ),
        (
            "replacement reverse diffusion (eps)",
            lambda key: (inpaint_replacement(models.eps, key, images, mask, num_samples=k), 0),
        ),
    ]
    train_mean = load_digits_data("train").images.mean(0)
    baseline = psnr(np.where(mask, images, train_mean[None]), images, ~mask)
    rows = [
        dict(
            method="training-mean fill (no model)",
            psnr=float(baseline.mean()),
            psnr_se=float(baseline.std() / np.sqrt(len(baseline))),
            psnr_of_mean=float(baseline.mean()),
            seconds=0.0,
            divergences=0,
        )
    ]
    grids = {"observed": np.where(mask, images, -1.0), "truth": images}
    for i, (name, method) in enumerate(methods):
        start = time.perf_counter()
        draws, divergences = method(jax.random.fold_in(key, i))
        seconds = time.perf_counter() - start
        per_image = inpainting_psnr(draws, images, mask).mean(1)
        of_mean = psnr(draws.mean(1), images, ~mask)
        rows.append(
            dict(
                method=name,
                psnr=float(per_image.mean()),
                psnr_se=float(per_image.std() / np.sqrt(len(per_image))),
                psnr_of_mean=float(of_mean.mean()),
                seconds=seconds,
                divergences=int(divergences),
            )
        )
        grids[name] = draws[:, 0]
    md = [
        f"Inpainting the lower half of {len(images)} held-out digits ({k} draws each; "
        f"annealed MCMC over {args.levels} levels). PSNR (dB) on the missing pixels, "
        "mean over images of the mean over draws (± SE over images), and of the draws' mean.",
        "",
        "| method | PSNR per draw | PSNR of the mean | divergences | time (s) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['method']} | {r['psnr']:.2f} ± {r['psnr_se']:.2f} | "
            f"{r['psnr_of_mean']:.2f} | {r['divergences']} | {r['seconds']:.0f} |"
        )
    plot_grid(grids, os.path.join(args.out, f"{args.name}_inpainting.png"))
    return rows, "\n".join(md)


def run_constraints(models, args) -> tuple[dict, str]:
    key = jax.random.PRNGKey(args.seed + 1)
    held = load_digits_data("held_out")
    # an evaluation classifier the constraint never saw (other seed)
    judge, judge_params = train_classifier(load_digits_data("train"), jax.random.PRNGKey(7))

    def judge_labels(x):
        return np.asarray(jnp.argmax(judge.apply(judge_params, jnp.asarray(x)), -1))

    n = args.constraint_chains

    def annealed(model, kernel, key):
        sampler = AnnealedMCMC(
            model,
            kernel,
            num_chains=n,
            steps_per_level=args.steps_per_level,
            levels=args.levels,
            progress_bar=False,
        )
        sampler.run(key)
        return np.asarray(sampler.get_samples()["x"]), sampler.num_divergent

    def pnp(model, key):
        result = plug_and_play(
            functools.partial(model, num_images=n), key, num_steps=args.pnp_steps
        )
        return np.asarray(result.params["x"]), 0

    def methods(build):
        """(name, run(key)) for one constraint model builder ``build(prior, denoised)``."""
        return [
            (
                "annealed HMC (energy), factor on x",
                lambda k: annealed(build(models.energy, False), "hmc", k),
            ),
            (
                "annealed HMC (energy), factor on denoised x",
                lambda k: annealed(build(models.energy, True), "hmc", k),
            ),
            (
                "annealed ULA (eps), factor on denoised x",
                lambda k: annealed(build(models.eps, True), "ula", k),
            ),
            ("plug-and-play (eps)", lambda k: pnp(build(models.eps, False), k)),
        ]

    classifier_rows = []
    for digit in args.digits:
        reference = held.images[held.labels == digit]

        def build(prior, denoised, digit=digit):
            return functools.partial(
                classifier_constraint_model,
                prior,
                models.classifier,
                models.classifier_params,
                digit,
                denoised=denoised,
            )

        for i, (name, run) in enumerate(methods(build)):
            if args.quick and not name.startswith("plug-and-play"):
                continue  # the smoke test: the symmetry part runs the annealed methods
            start = time.perf_counter()
            x, divergences = run(jax.random.fold_in(key, 10 * digit + i))
            classifier_rows.append(
                dict(
                    digit=int(digit),
                    method=name,
                    accuracy=float(np.mean(judge_labels(x) == digit)),
                    diversity=diversity(x),
                    held_out_diversity=diversity(reference),
                    divergences=int(divergences),
                    seconds=time.perf_counter() - start,
                )
            )
    free = np.asarray(models.eps.sample(jax.random.fold_in(key, 1000), n, levels=args.levels))
    symmetry_rows = [
        dict(
            method="no constraint (reverse diffusion, eps)",
            error=float(symmetry_error(free).mean()),
            classes=np.bincount(judge_labels(free), minlength=10).tolist(),
            divergences=0,
            seconds=0.0,
        )
    ]
    grids = {"no constraint": free}

    def build_symmetric(prior, denoised):
        return functools.partial(symmetry_model, prior, denoised=denoised)

    for i, (name, run) in enumerate(methods(build_symmetric)):
        if args.quick and not name.startswith(("annealed ULA", "plug-and-play")):
            continue  # the smoke test: the annealed and point-estimate paths once each
        start = time.perf_counter()
        x, divergences = run(jax.random.fold_in(key, 2000 + i))
        symmetry_rows.append(
            dict(
                method=name,
                error=float(symmetry_error(x).mean()),
                classes=np.bincount(judge_labels(x), minlength=10).tolist(),
                divergences=int(divergences),
                seconds=time.perf_counter() - start,
            )
        )
        grids[name.replace(", factor on", ",\nfactor on")] = x
    md = [
        f"Classifier constraint p(x) p(y = d | x) with the unconditional (null-class) prior, "
        f"{n} draws per method; accuracy by an independently trained classifier; diversity = "
        "mean pairwise distance (held-out digits of the class for reference). 'Denoised x': "
        "the classifier sees Tweedie's estimate at the chain's noise level.",
        "",
        "| digit | method | accuracy | diversity | held-out diversity | divergences | time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in classifier_rows:
        md.append(
            f"| {r['digit']} | {r['method']} | {r['accuracy']:.2f} | {r['diversity']:.2f} | "
            f"{r['held_out_diversity']:.2f} | {r['divergences']} | {r['seconds']:.0f} |"
        )
    md += [
        "",
        f"Mirror-symmetry factor -2 ||x - mirror(x)||^2: mean asymmetry ||x - mirror(x)||^2 of "
        f"the draws (held-out digits: {symmetry_error(held.images).mean():.2f}) and the judge's "
        "class counts.",
        "",
        "| method | asymmetry | classes 0-9 | divergences | time (s) |",
        "|---|---|---|---|---|",
    ]
    for r in symmetry_rows:
        md.append(
            f"| {r['method']} | {r['error']:.2f} | {r['classes']} | {r['divergences']} | "
            f"{r['seconds']:.0f} |"
        )
    plot_grid(grids, os.path.join(args.out, f"{args.name}_symmetry.png"))
    return dict(classifier=classifier_rows, symmetry=symmetry_rows), "\n".join(md)


def run_cfg(models, args) -> tuple[list[dict], str]:
    held = load_digits_data("held_out")
    rows = cfg_tradeoff(
        models,
        jax.random.PRNGKey(args.seed + 2),
        held.images,
        args.scales,
        num_per_class=args.cfg_per_class,
        levels=args.cfg_levels,
        progress_bar=not args.quiet,
    )
    train = load_digits_data("train")
    feats = functools.partial(models.classifier.apply, models.classifier_params, features=True)
    from numpyro_diffusion.metrics import frechet_distance

    floor = frechet_distance(
        np.asarray(feats(jnp.asarray(train.images))), np.asarray(feats(jnp.asarray(held.images)))
    )
    md = [
        f"Classifier-free guidance, {args.cfg_per_class} samples per class, reverse diffusion "
        f"over {args.cfg_levels} levels (eps model). Frechet distance in the classifier's "
        f"64-d feature space against the {len(held.images)} held-out digits (training digits "
        f"score {floor:.2f}); classifier score exp E KL(p(y|x) || p(y)) (max 10).",
        "",
        "| w | Frechet distance | classifier score | accuracy | diversity |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['w']:g} | {r['frechet']:.2f} | {r['classifier_score']:.2f} | "
            f"{r['accuracy']:.3f} | {r['diversity']:.2f} |"
        )
    plot_cfg(rows, floor, os.path.join(args.out, f"{args.name}_cfg.png"))
    return rows, "\n".join(md)


def plot_grid(rows: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(rows), n, figsize=(0.6 * n + 2.2, 0.75 * len(rows)), squeeze=False)
    for r, (name, images) in enumerate(rows.items()):  # one row per method
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(np.asarray(images[c])[..., 0], cmap="gray_r", vmin=-1, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_cfg(rows: list[dict], floor: float, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = [r["w"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3))
    a.plot(w, [r["frechet"] for r in rows], "o-")
    a.axhline(floor, color="gray", ls="--", label="training digits")
    a.set(xscale="symlog", xlabel="guidance w", ylabel="Frechet distance (lower is better)")
    a.legend()
    b.plot(w, [r["classifier_score"] for r in rows], "o-", color="C1")
    b.set(xscale="symlog", xlabel="guidance w", ylabel="classifier score (higher: sharper)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=PARTS, action="append")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=8, help="draws per inpainted image")
    parser.add_argument("--constraint-chains", type=int, default=16)
    parser.add_argument("--inpaint-per-class", type=int, default=2)
    parser.add_argument("--levels", type=int, default=30)
    parser.add_argument("--steps-per-level", type=int, default=4)
    parser.add_argument("--pnp-steps", type=int, default=500)
    parser.add_argument("--digits", type=int, nargs="+", default=[3])
    parser.add_argument("--scales", type=float, nargs="+", default=[0, 0.1, 0.3, 0.5, 1, 2, 4])
    parser.add_argument("--cfg-per-class", type=int, default=50)
    parser.add_argument("--cfg-levels", type=int, default=100)
    parser.add_argument("--out", default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="tiny settings (smoke test)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.inpaint_per_class, args.levels, args.steps_per_level = 2, 1, 5, 2
        args.constraint_chains = 4
        args.pnp_steps, args.digits, args.scales = 20, [3], [0.0, 4.0]
        args.cfg_per_class, args.cfg_levels = 4, 5
    args.name = "digits_quick" if args.quick else "digits"
    os.makedirs(args.out, exist_ok=True)
    models = load_digit_models()
    result: dict = dict(device=device_name(), settings=vars(args).copy())
    sections = []
    runners = {"inpainting": run_inpainting, "constraints": run_constraints, "cfg": run_cfg}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*divergent transitions.*")
        for part in args.only or PARTS:
            start = time.perf_counter()
            result[part], text = runners[part](models, args)
            sections.append(f"## {part} ({time.perf_counter() - start:.0f} s)\n\n{text}\n")
    header = f"# Plug-and-play on the 8x8 digits\n\nDevice: {result['device']}.\n\n"
    write_results(args.out, args.name, result, header + "\n".join(sections))
    return result


if __name__ == "__main__":
    main()
