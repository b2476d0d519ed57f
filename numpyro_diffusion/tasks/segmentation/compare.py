"""Every segmentation method on the same images: scores, a table, figures."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from jax import Array

from numpyro_diffusion.metrics import mean_and_standard_error
from numpyro_diffusion.tasks.segmentation.baselines import matched_clustering
from numpyro_diffusion.tasks.segmentation.landcover import CLASSES, City
from numpyro_diffusion.tasks.segmentation.scores import (
    calibration_error_spread,
    expected_calibration_error,
    mean_iou,
    pixel_accuracy,
    reliability,
)
from numpyro_diffusion.tasks.segmentation.segment import SegmentationResult, segment

__all__ = [
    "LABELS",
    "score",
    "compare_methods",
    "format_table",
    "plot_segmentation",
    "plot_reliability",
]

LABELS = {
    "clustering": "colour clustering (GMM, colour priors)",
    "potts": "colour clustering + Potts smoothing",
    "matched": "unsupervised clusters, Hungarian-matched to the truth (oracle)",
    "constraints": "diffusion prior, clustering constraints (Graikos et al.)",
    "plug_and_play": "diffusion prior + appearance model, point estimate",
    "annealed": "diffusion prior + appearance model, annealed MCMC",
}


def score(name: str, probs, truth, seconds: float) -> dict:
    """Mean and standard error over images of accuracy and mean IoU, and the ECE with
    its bootstrap standard error over images."""
    probs, truth = np.asarray(probs), np.asarray(truth)
    labels = probs.argmax(-1)
    accuracy, accuracy_se = mean_and_standard_error(pixel_accuracy(labels, truth))
    miou, miou_se = mean_and_standard_error(mean_iou(labels, truth, probs.shape[-1]))
    return dict(
        method=name,
        accuracy=accuracy,
        accuracy_se=accuracy_se,
        miou=miou,
        miou_se=miou_se,
        ece=expected_calibration_error(probs, truth),
        ece_se=calibration_error_spread(probs, truth),
        seconds=seconds,
    )


def compare_methods(
    rng_key: Array,
    images,
    truth,
    city: City,
    methods: tuple[str, ...] = ("clustering", "potts", "matched", "plug_and_play", "annealed"),
    prior: Any = None,
    **segment_kwargs: Any,
) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Score each method on ``images`` ``(B, H, W, 3)`` against ``truth`` ``(B, H, W)``;
    ``city`` gives the weak priors. Returns the rows (:func:`score`, seconds per image)
    and each method's ``probs`` ``(B, H, W, K)``."""
    rows, probs = [], {}
    for name in methods:
        start = time.perf_counter()
        if name == "matched":
            p = matched_clustering(images, truth, len(np.asarray(city.palette)))
        else:
            result: SegmentationResult = segment(
                rng_key, images, city=city, method=name, prior=prior, **segment_kwargs
            )
            p = result.probs
        seconds = (time.perf_counter() - start) / len(images)
        probs[name] = p
        rows.append(score(name, p, truth, seconds))
    return rows, probs


def format_table(rows: list[dict], title: str) -> str:
    lines = [
        title,
        "",
        "| method | pixel accuracy | mean IoU | ECE | s / image |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {LABELS.get(r['method'], r['method'])} | {100 * r['accuracy']:.1f} +- "
            f"{100 * r['accuracy_se']:.1f} % | {100 * r['miou']:.1f} +- {100 * r['miou_se']:.1f} % "
            f"| {r['ece']:.3f} +- {r['ece_se']:.3f} | {r['seconds']:.2f} |"
        )
    return "\n".join(lines)


def _class_colours():
    import matplotlib.colors as mcolors

    return mcolors.ListedColormap(
        ["#2b6cb0", "#7f7f7f", "#c0392b", "#1e6b2e", "#8bc34a", "#d4b46a"][: len(CLASSES)]
    )


def plot_segmentation(image, result: SegmentationResult, index: int, path: str, truth=None) -> None:
    """Image, truth (when known), MAP labels and per-pixel entropy of one image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("image", np.asarray(image))]
    if truth is not None:
        panels.append(("truth", np.asarray(truth)))
    panels += [("MAP labels", result.labels[index]), ("entropy (nats)", result.entropy[index])]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4))
    cmap = _class_colours()
    for ax, (title, data) in zip(axes, panels, strict=True):
        if data.ndim == 3:
            ax.imshow(data, interpolation="nearest")
        elif title == "entropy (nats)":
            im = ax.imshow(data, cmap="magma", vmin=0, vmax=np.log(cmap.N), interpolation="nearest")
            fig.colorbar(im, ax=ax, fraction=0.046)
        else:
            ax.imshow(data, cmap=cmap, vmin=-0.5, vmax=cmap.N - 0.5, interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    handles = [matplotlib.patches.Patch(color=cmap(k), label=c) for k, c in enumerate(CLASSES)]
    fig.legend(handles=handles, loc="lower center", ncol=len(CLASSES), frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 0.97))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_reliability(probs: dict[str, np.ndarray], truth, path: str) -> None:
    """Reliability diagrams (accuracy against top-class probability) of several methods."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="calibrated")
    for name, p in probs.items():
        r = reliability(p, truth)
        keep = r.fraction > 0.002
        ece = expected_calibration_error(p, truth)
        ax.plot(
            r.confidence[keep], r.accuracy[keep], marker="o", ms=3, label=f"{name} (ECE {ece:.3f})"
        )
    ax.set_xlabel("top-class probability")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
