"""Segmentation of the held-out city B with the prior trained on city A's maps.

Fixed-seed maps of city B rendered with its palette; every method gets the same weak
colour priors (``city``'s palette, or city A's with ``--palette A``: the images'
colours then differ from the priors by the whole domain shift), or in a palette no
method was built with (``--new-palette SEED``: city B's palette moved by
``--palette-shift`` per channel, drawn from SEED, and given to every method as the
city's), or on another city's layouts (``--layout A``: city A's maps, the prior's own
kind, rendered with city B's palette, texture, shading and noise). Pixel accuracy and
mean IoU (mean +- standard error over images), expected calibration error of the
per-pixel probabilities, seconds per image; a reliability plot and one example.

    python benchmarks/segmentation.py               # 32 images of city B
    python benchmarks/segmentation.py --palette A   # colour priors from the training city
    python benchmarks/segmentation.py --new-palette 31   # city B's maps in other colours
    python benchmarks/segmentation.py --brightness  # class colours vary in brightness
    python benchmarks/segmentation.py --layout A    # city A's maps in city B's colours
    python benchmarks/segmentation.py --quick       # smoke test
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import RESULTS, device_name, write_results  # noqa: E402

import numpyro_diffusion as nd  # noqa: E402
from numpyro_diffusion.tasks import segmentation as seg  # noqa: E402

START_TEXT = {  # each appearance_start, as the results' titles state it
    "palette": "at the palette",
    "prior": "drawn from the colour priors",
    "own_cell": "drawn from the colour priors, each nearer its own palette entry than any other",
}

METHODS = ("clustering", "potts", "matched", "constraints", "plug_and_play", "annealed")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--city", default="B", help="the city whose images are segmented")
    parser.add_argument("--palette", default=None, help="the city whose palette sets the priors")
    parser.add_argument(
        "--new-palette", type=int, default=None, metavar="SEED", help="recolour the city"
    )
    parser.add_argument("--palette-shift", type=float, default=0.06)
    parser.add_argument(
        "--layout", default=None, help="the city whose maps are drawn (in --city's colours)"
    )
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--samples", type=int, default=16, help="chains per image (annealed)")
    parser.add_argument("--levels", type=int, default=50)
    parser.add_argument("--steps-per-level", type=int, default=6)
    parser.add_argument(
        "--images-per-run",
        type=int,
        default=None,
        help="images in one annealed run (default: all on an accelerator, one on a CPU)",
    )
    parser.add_argument("--pnp-steps", type=int, default=300)
    parser.add_argument("--prior", default=None, help="a prior checkpoint (default: shipped)")
    parser.add_argument(
        "--brightness",
        action="store_true",
        help="every method's class colours with a brightness spread (BrightnessNormal)",
    )
    parser.add_argument(
        "--hold-appearance",
        action="store_true",
        help="annealed MCMC holds the appearance at its prior while the map is noise",
    )
    parser.add_argument(
        "--swap-classes",
        action="store_true",
        help="annealed MCMC proposes swaps of two classes' map channels and appearance",
    )
    parser.add_argument(
        "--appearance-start",
        choices=seg.APPEARANCE_STARTS,
        default="own_cell",
        help="where annealed chains start their class colours: "
        + "; ".join(f"{key}: {text}" for key, text in START_TEXT.items()),
    )
    parser.add_argument(
        "--prior-weight",
        type=float,
        default=None,
        help="the label-map prior's power (default: 1 in its own city, "
        f"{seg.OTHER_CITY_PRIOR_WEIGHT} in another)",
    )
    parser.add_argument(
        "--level-progress",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a progress bar over each walk's noise levels; it is a host callback, and JAX "
        "keeps no walk with one in its persistent compilation cache, so a sweep of runs "
        "sharing that cache turns it off",
    )
    parser.add_argument("--out", default=RESULTS)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.samples, args.levels, args.steps_per_level, args.pnp_steps = 2, 2, 4, 1, 8
    truth_city = seg.CITIES[args.city]
    if args.new_palette is not None:
        truth_city = recoloured(truth_city, args.new_palette, args.palette_shift)
    if args.layout is not None:
        truth_city = laid_out_like(seg.CITIES[args.layout], truth_city)
    prior_city = truth_city if args.palette is None else seg.CITIES[args.palette]
    k_maps, k_render, k_run = jax.random.split(jax.random.PRNGKey(args.seed), 3)
    truth = seg.generate_maps(k_maps, args.images, truth_city)
    images = seg.render(k_render, truth, truth_city)
    prior = seg.load_segmentation_prior() if args.prior is None else nd.load(args.prior)
    methods = tuple(args.methods.split(","))
    rows, probs = seg.compare_methods(
        k_run,
        images,
        truth,
        prior_city,
        methods,
        prior=prior,
        num_samples=args.samples,
        levels=args.levels,
        steps_per_level=args.steps_per_level,
        images_per_run=args.images_per_run,
        progress_bar=args.level_progress and not args.quick,
        num_steps=args.pnp_steps,
        brightness=args.brightness,
        hold_appearance=args.hold_appearance,
        swap_classes=args.swap_classes,
        prior_weight=args.prior_weight,
        appearance_start=args.appearance_start,
    )
    name = f"segmentation_{truth_city.name}" + (f"_palette{args.palette}" if args.palette else "")
    name += "_brightness" if args.brightness else ""
    name += "_hold" if args.hold_appearance else ""
    name += "_swap" if args.swap_classes else ""
    # results predating the other starts are the palette start's, unsuffixed
    name += {"palette": "", "prior": "_priorstart", "own_cell": "_cellstart"}[args.appearance_start]
    name += f"_weight{args.prior_weight:g}" if args.prior_weight is not None else ""
    name += f"_{args.images}images" if args.images != 32 and not args.quick else ""
    name += "_quick" if args.quick else ""
    weight_text = (
        f"{args.prior_weight:g}"
        if args.prior_weight is not None
        else f"the default (1 in city A, {seg.OTHER_CITY_PRIOR_WEIGHT:g} in another city)"
    )
    title = (
        f"# Segmentation of city {truth_city.name} ({args.images} images, seed {args.seed}), prior "
        f"trained on city A, colour priors from city {prior_city.name}'s palette\n\n"
        f"Device: {device_name()}. Mean +- standard error over images; ECE over all pixels "
        f"(15 bins); annealed: {args.samples} chains, {args.levels} levels x "
        f"{args.steps_per_level} steps; plug-and-play: {args.pnp_steps} steps. Class colours: "
        + ("with a brightness spread (BrightnessNormal)." if args.brightness else "isotropic.")
        + (
            " Annealed MCMC holds the appearance while the map is noise."
            if args.hold_appearance
            else ""
        )
        + (" Annealed MCMC proposes class swaps." if args.swap_classes else "")
        + " Annealed chains start their class colours "
        + START_TEXT[args.appearance_start]
        + "."
        + f" Prior weight: {weight_text}."
    )
    write_results(
        args.out, name, dict(settings=vars(args), rows=rows), seg.format_table(rows, title)
    )
    seg.plot_reliability(probs, truth, os.path.join(args.out, f"{name}_reliability.png"))
    shown = "annealed" if "annealed" in probs else methods[-1]
    example = seg.SegmentationResult(probs[shown].argmax(-1), probs[shown], None, None)
    seg.plot_segmentation(images[0], example, 0, os.path.join(args.out, f"{name}.png"), truth[0])
    return dict(rows=rows)


def recoloured(city: seg.City, seed: int, shift: float) -> seg.City:
    """``city`` with each palette channel moved by ``Normal(0, shift)`` (seeded), kept in
    [0.05, 0.95]; named ``"<city>-palette<seed>"``."""
    rng = np.random.default_rng(seed)
    palette = np.clip(city.palette + rng.normal(0.0, shift, city.palette.shape), 0.05, 0.95)
    return city._replace(name=f"{city.name}-palette{seed}", palette=palette)


def laid_out_like(layout: seg.City, city: seg.City) -> seg.City:
    """``layout``'s maps (roads, buildings, class proportions) with ``city``'s appearance
    (palette, texture, colour jitter, shading, noise); named ``"<city>-layout<layout>"``."""
    return layout._replace(
        name=f"{city.name}-layout{layout.name}",
        palette=city.palette,
        texture=city.texture,
        colour_jitter=city.colour_jitter,
        shading=city.shading,
        noise=city.noise,
    )


if __name__ == "__main__":
    main()
