"""Scores of a segmentation against the truth: accuracy, mean IoU, calibration."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["pixel_accuracy", "mean_iou", "Reliability", "reliability", "expected_calibration_error"]


def pixel_accuracy(labels, truth) -> np.ndarray:
    """Fraction of correct pixels per image, ``(B,)``."""
    return np.mean(np.asarray(labels) == np.asarray(truth), axis=(-2, -1))


def mean_iou(labels, truth, num_classes: int) -> np.ndarray:
    """Per image, the mean over classes present in the truth or the prediction of their
    intersection over union, ``(B,)``."""
    labels, truth = np.asarray(labels), np.asarray(truth)
    pred = np.eye(num_classes, dtype=bool)[labels]
    true = np.eye(num_classes, dtype=bool)[truth]
    inter = np.sum(pred & true, axis=(1, 2))
    union = np.sum(pred | true, axis=(1, 2))
    return np.sum(inter / np.maximum(union, 1), -1) / np.maximum(np.sum(union > 0, -1), 1)


class Reliability(NamedTuple):
    confidence: np.ndarray  # [bins] mean top-class probability of the bin's pixels
    accuracy: np.ndarray  # [bins] their accuracy
    fraction: np.ndarray  # [bins] share of all pixels in the bin


def reliability(probs, truth, num_bins: int = 15) -> Reliability:
    """Reliability diagram of the top-class probability of ``probs`` ``(B, H, W, K)``
    (empty bins hold NaN)."""
    probs, truth = np.asarray(probs), np.asarray(truth)
    confidence = probs.max(-1).ravel()
    correct = (probs.argmax(-1) == truth).ravel()
    bins = np.clip((confidence * num_bins).astype(int), 0, num_bins - 1)
    count = np.bincount(bins, minlength=num_bins)
    with np.errstate(invalid="ignore"):
        conf = np.bincount(bins, confidence, num_bins) / count
        acc = np.bincount(bins, correct, num_bins) / count
    return Reliability(conf, acc, count / count.sum())


def expected_calibration_error(probs, truth, num_bins: int = 15) -> float:
    """``sum_bins share * |accuracy - confidence|`` over the top-class probability."""
    r = reliability(probs, truth, num_bins)
    keep = r.fraction > 0
    return float(np.sum(r.fraction[keep] * np.abs(r.accuracy[keep] - r.confidence[keep])))


def calibration_error_spread(
    probs, truth, num_bins: int = 15, num_resamples: int = 200, seed: int = 0
) -> float:
    """Bootstrap standard error of :func:`expected_calibration_error` over images
    (images resampled with replacement; pixels of one image are not independent)."""
    probs, truth = np.asarray(probs), np.asarray(truth)
    rng = np.random.default_rng(seed)
    draws = [
        expected_calibration_error(probs[i], truth[i], num_bins)
        for i in rng.integers(0, len(probs), (num_resamples, len(probs)))
    ]
    return float(np.std(draws, ddof=1))
