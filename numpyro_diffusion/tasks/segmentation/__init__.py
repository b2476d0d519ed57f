"""Plug-and-play segmentation of synthetic land cover (Graikos et al., section 4).

Cities and label maps (:mod:`.landcover`), aerial images of them (:mod:`.aerial`), the
posterior programs (:mod:`.posterior`), the chains' class swaps (:mod:`.swap`) and
starts (:mod:`.start`), colour-only baselines (:mod:`.baselines`),
scores (:mod:`.scores`), ``segment`` (:mod:`.segment`) and comparisons (:mod:`.compare`).
"""

from numpyro_diffusion.tasks.segmentation.aerial import one_hot_maps, render
from numpyro_diffusion.tasks.segmentation.compare import (
    LABELS,
    compare_methods,
    format_table,
    plot_reliability,
    plot_segmentation,
    score,
)
from numpyro_diffusion.tasks.segmentation.landcover import (
    CITIES,
    CLASSES,
    City,
    generate_maps,
)
from numpyro_diffusion.tasks.segmentation.scores import (
    calibration_error_spread,
    expected_calibration_error,
    mean_iou,
    pixel_accuracy,
    reliability,
)
from numpyro_diffusion.tasks.segmentation.segment import (
    APPEARANCE_STARTS,
    METHODS,
    OTHER_CITY_PRIOR_WEIGHT,
    SegmentationResult,
    check_images,
    entropy,
    load_segmentation_prior,
    segment,
)

__all__ = [
    "APPEARANCE_STARTS",
    "CITIES",
    "CLASSES",
    "City",
    "LABELS",
    "METHODS",
    "OTHER_CITY_PRIOR_WEIGHT",
    "SegmentationResult",
    "check_images",
    "compare_methods",
    "entropy",
    "calibration_error_spread",
    "expected_calibration_error",
    "format_table",
    "generate_maps",
    "load_segmentation_prior",
    "mean_iou",
    "one_hot_maps",
    "pixel_accuracy",
    "plot_reliability",
    "plot_segmentation",
    "reliability",
    "render",
    "score",
    "segment",
]
