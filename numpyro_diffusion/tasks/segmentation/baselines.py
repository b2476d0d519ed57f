"""Colour-only segmentations: a Gaussian mixture with colour priors, the same with Potts
smoothing (mean field), and unsupervised clusters matched to the truth (an upper bound)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment
from scipy.special import softmax

from numpyro_diffusion.tasks.segmentation.posterior import grey_axis_log_density

__all__ = ["AppearanceFit", "colour_clustering", "potts_smoothing", "matched_clustering"]

_NEIGHBOURS = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], float)


_GREY = np.ones(3) / np.sqrt(3.0)  # the unit vector of a change in brightness


class AppearanceFit:
    """Fitted class colours ``(B, K, 3)``, scales ``(B, K)``, brightness spreads
    ``(B, K)`` (zero for an isotropic fit), weights ``(B, K)`` and the per-pixel class
    log-likelihoods ``(B, H, W, K)`` under them (the appearance model's class density,
    :func:`~numpyro_diffusion.tasks.segmentation.posterior.class_colour_distribution`)."""

    def __init__(self, colours, scales, weights, images, brightness=None):
        self.colours, self.scales, self.weights = colours, scales, weights
        self.brightness = np.zeros_like(scales) if brightness is None else brightness
        diff = images[:, :, :, None, :] - colours[:, None, None]
        self.log_likelihood = grey_axis_log_density(
            diff, scales[:, None, None, :], self.brightness[:, None, None, :]
        )

    def posterior(self) -> np.ndarray:
        return softmax(np.log(self.weights)[:, None, None] + self.log_likelihood, axis=-1)


def colour_clustering(
    images,
    colour_mean,
    colour_scale: float = 0.1,
    num_iterations: int = 50,
    min_scale: float = 0.01,
    brightness: bool = False,
) -> tuple[np.ndarray, AppearanceFit]:
    """Per-pixel class probabilities ``(B, H, W, K)`` of a Gaussian mixture fitted to each
    image's pixels by MAP EM, the class colours starting at and shrunk toward
    ``colour_mean`` ``(K, 3)`` with prior scale ``colour_scale`` (which fixes each
    component's class). ``brightness=True`` fits each class the appearance model's
    density, a covariance ``scale^2 I + brightness^2 1 1^T`` (a class's pixels vary more
    in brightness than in hue), not ``scale^2 I``."""
    images = np.asarray(images, np.float64)
    mean = np.asarray(colour_mean, np.float64)
    b, k = images.shape[0], mean.shape[0]
    colours = np.broadcast_to(mean, (b, k, 3)).copy()
    scales = np.full((b, k), 0.1)
    spread = np.zeros((b, k))
    weights = np.full((b, k), 1.0 / k)
    pixels = images.reshape(b, -1, 3)
    for _ in range(num_iterations):
        fit = AppearanceFit(colours, scales, weights, images, spread)
        r = fit.posterior().reshape(b, -1, k)
        mass = r.sum(1)  # (B, K)
        # MAP colours: (mass S^-1 + I / colour_scale^2)^-1 (S^-1 sum r y + mean / colour_scale^2)
        var, var_grey = scales**2, scales**2 + 3.0 * spread**2
        outer = np.outer(_GREY, _GREY)
        inverse = (np.eye(3) - outer) / var[..., None, None] + outer / var_grey[..., None, None]
        weighted = np.einsum("bpk,bpc->bkc", r, pixels)
        precision = mass[..., None, None] * inverse + np.eye(3) / colour_scale**2
        target = np.einsum("bkij,bkj->bki", inverse, weighted) + mean / colour_scale**2
        colours = np.linalg.solve(precision, target[..., None])[..., 0]
        diff = pixels[:, :, None] - colours[:, None]
        sq = np.einsum("bpk,bpk->bk", r, np.sum(diff**2, -1))
        if brightness:
            grey = np.einsum("bpk,bpk->bk", r, (diff @ _GREY) ** 2) / (mass + 1e-9)
            across = (sq - grey * mass) / (2 * mass + 1e-9)
            scales = np.sqrt(np.maximum(across, min_scale**2))
            spread = np.sqrt(np.maximum(grey - scales**2, 0.0) / 3.0)
        else:
            scales = np.sqrt(np.maximum(sq / (3 * mass + 1e-9), min_scale**2))
        weights = np.maximum(mass / mass.sum(-1, keepdims=True), 1e-6)
    fit = AppearanceFit(colours, scales, weights, images, spread)
    return fit.posterior(), fit


def potts_smoothing(
    fit: AppearanceFit, coupling: float = 1.0, num_iterations: int = 20
) -> np.ndarray:
    """Mean-field posterior ``(B, H, W, K)`` of a Potts model with 4-neighbour ``coupling``
    over the classes, its unary terms the fitted mixture's."""
    unary = np.log(fit.weights)[:, None, None] + fit.log_likelihood
    q = softmax(unary, axis=-1)
    for _ in range(num_iterations):
        field = ndimage.convolve(q, _NEIGHBOURS[None, :, :, None], mode="nearest")
        q = softmax(unary + coupling * field, axis=-1)
    return q


def matched_clustering(images, truth, num_classes: int, num_iterations: int = 100) -> np.ndarray:
    """Class probabilities ``(B, H, W, K)`` from an unsupervised Gaussian mixture per
    image (k-means++ start), its components mapped to classes by the Hungarian
    assignment that best matches ``truth`` ``(B, H, W)``: what colour alone could reach
    with an oracle naming the clusters."""
    from sklearn.mixture import GaussianMixture

    images, truth = np.asarray(images, np.float64), np.asarray(truth)
    b, h, w, _ = images.shape
    out = np.zeros((b, h, w, num_classes))
    for i in range(b):
        gm = GaussianMixture(
            num_classes,
            covariance_type="spherical",
            max_iter=num_iterations,
            init_params="k-means++",
            random_state=i,
            reg_covar=1e-4,
        )
        r = gm.fit(images[i].reshape(-1, 3)).predict_proba(images[i].reshape(-1, 3))
        overlap = np.einsum("pc,pk->ck", r, np.eye(num_classes)[truth[i].ravel()])
        rows, cols = linear_sum_assignment(-overlap)
        out[i][..., cols] = r.reshape(h, w, num_classes)[..., rows]
    return out
