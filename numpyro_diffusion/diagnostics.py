"""ArviZ conversion and plots of annealed MCMC runs.

``to_arviz`` gives ``posterior`` (``chain``, ``draw``, ...) named after the model's
sites, ``sample_stats`` with ArviZ's names for the final-level draws, and a
``level_stats`` group with a ``level`` dimension whose coordinate is the noise level.
The plots return matplotlib figures.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

try:
    import arviz as az
except FileNotFoundError:
    # ArviZ rewrites a once-a-day stamp file on import (a temporary file renamed over
    # it); processes importing it together (xdist workers, jax.distributed launches)
    # race on the rename. The winner has written today's stamp, so a second try passes.
    import arviz as az

from numpyro_diffusion.infer.nested_rhat import nested_rhat

__all__ = [
    "nested_rhat",
    "to_arviz",
    "plot_level_stats",
    "plot_sample_clouds",
    "plot_trace",
    "plot_rank",
]


def to_arviz(
    sampler: Any, dims: dict[str, list[str]] | None = None, coords: dict[str, Any] | None = None
) -> az.InferenceData:
    """``arviz.InferenceData`` of an :class:`~numpyro_diffusion.infer.AnnealedMCMC` run.

    Groups: ``posterior`` (``chain``, ``draw``, ...); ``sample_stats`` in ArviZ's names
    (``diverging``, ``step_size``, ``acceptance_rate`` and ``lp`` where the kernel has
    them, ``energy`` for HMC, so ``az.bfmi`` and ``az.plot_energy`` work);
    ``log_likelihood`` (each observed site's pointwise log-likelihood at ``t = 0``, for
    ``az.loo`` / ``az.waic``) and ``observed_data`` when the model has observations;
    ``level_stats``, per-level data with a ``level`` dimension (the noise level), not
    draws: ``az.summary`` does not apply to it. ``dims`` and ``coords`` name the
    sites' dimensions as in ``arviz.from_dict`` / NumPyro's converter.
    """
    samples = {k: np.asarray(v) for k, v in sampler.get_samples(group_by_chain=True).items()}
    draws = sampler.draw_stats
    kernel = sampler.last_kernel
    stats: dict[str, np.ndarray] = {
        "diverging": np.asarray(draws.diverging),
        "step_size": np.asarray(draws.step_size),
    }
    if kernel.adaptable:  # a Metropolis kernel: its acceptance means something
        stats["acceptance_rate"] = np.asarray(draws.acceptance_rate)
    lp = np.asarray(draws.lp)
    if np.all(np.isfinite(lp)):
        stats["lp"] = lp
    energy = np.asarray(draws.energy)
    if np.all(np.isfinite(energy)):
        stats["energy"] = energy
    stats["n_steps"] = np.full(lp.shape, kernel.num_integration_steps, dtype=np.int64)
    log_likelihood = {k: np.asarray(v) for k, v in sampler.log_likelihood().items()}
    observed = {k: np.asarray(v) for k, v in sampler.observed_data().items()}
    with warnings.catch_warnings():
        # many independent chains with few draws each is the annealed sampler's normal shape
        warnings.filterwarnings("ignore", message="More chains")
        idata = az.from_dict(
            posterior=samples,
            sample_stats=stats,
            log_likelihood=log_likelihood or None,
            observed_data=observed or None,
            dims=dims,
            coords=coords,
        )
    levels = sampler.level_stats
    level_coord = {"level": np.asarray(levels.level)}
    level_data = xr.Dataset(
        {name: ("level", np.asarray(getattr(levels, name))) for name in type(levels)._fields[1:]},
        coords=level_coord,
    )
    idata.add_groups(level_stats=level_data)
    return idata


def _level_dataset(run: Any) -> xr.Dataset:
    if isinstance(run, az.InferenceData):
        return run.level_stats
    return to_arviz(run).level_stats


def plot_level_stats(run: Any, title: str | None = None):
    """Acceptance rate, step size and divergences against the noise level ``t``.

    ``run`` is a sampler after ``run`` or its ``to_arviz()`` result.
    """
    import matplotlib.pyplot as plt

    ds = _level_dataset(run)
    t = ds["level"].values
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2), constrained_layout=True)
    axes[0].plot(t, ds["acceptance_rate"].values, marker=".", lw=1)
    axes[0].set(xlabel="noise level t", ylabel="acceptance rate", ylim=(0, 1.02))
    axes[1].semilogy(t, ds["step_size"].values, marker=".", lw=1)
    axes[1].set(xlabel="noise level t", ylabel="step size (median over chains)")
    axes[2].bar(t, ds["num_divergent"].values, width=max(1.0, np.ptp(t) / max(len(t), 1)))
    axes[2].set(xlabel="noise level t", ylabel="divergent transitions")
    for ax in axes:
        ax.invert_xaxis()  # the walk runs from noise (left) to data (right)
    if title:
        fig.suptitle(title)
    return fig


def plot_sample_clouds(
    sampler: Any,
    levels: Sequence[int] | None = None,
    site: str = "x",
    max_points: int = 2000,
    lim: float | None = None,
):
    """Scatter plots of a 2D site's chains at chosen levels of the walk.

    Needs ``keep_trajectory=True``; ``levels`` defaults to five evenly spaced ones.
    """
    import matplotlib.pyplot as plt

    walked, values = sampler.get_trajectory(site)
    walked, values = np.asarray(walked), np.asarray(values)
    if values.shape[-1] != 2 or values.ndim != 3:
        raise ValueError(f"site {site!r} has shape {values.shape[2:]}; clouds need 2D points.")
    if levels is None:
        idx = np.unique(np.round(np.linspace(0, len(walked) - 1, 5)).astype(int))
    else:
        idx = []
        for level in levels:
            where = np.flatnonzero(walked == level)
            if where.size == 0:
                raise ValueError(f"level {level} was not walked; walked levels: {walked.tolist()}")
            idx.append(int(where[0]))
    if lim is None:
        lim = 1.05 * float(np.percentile(np.abs(values[idx]), 99.5))
    fig, axes = plt.subplots(
        1, len(idx), figsize=(3 * len(idx), 3.1), squeeze=False, constrained_layout=True
    )
    for ax, i in zip(axes[0], idx, strict=True):
        pts = values[i][:max_points]
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5)
        ax.set_title(f"t = {walked[i]}")
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal")
    return fig


def plot_trace(run: Any, var_names: Sequence[str] | None = None):
    """ArviZ trace plot of the final-level draws; returns the figure."""
    idata = run if isinstance(run, az.InferenceData) else to_arviz(run)
    axes = az.plot_trace(idata, var_names=var_names, compact=True)
    return np.asarray(axes).ravel()[0].figure


def plot_rank(run: Any, var_names: Sequence[str] | None = None):
    """ArviZ rank plot of the final-level draws; returns the figure."""
    idata = run if isinstance(run, az.InferenceData) else to_arviz(run)
    axes = az.plot_rank(idata, var_names=var_names)
    return np.asarray(axes).ravel()[0].figure
