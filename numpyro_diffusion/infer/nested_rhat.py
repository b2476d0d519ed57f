"""Nested R-hat (Margossian et al., 2022) for many short chains that share starts."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["NestedRhat", "nested_rhat", "EXCESS_Z_FLAG"]

EXCESS_Z_FLAG = 4.0  # flag an excess over independent chains of this many standard deviations


class NestedRhat(NamedTuple):
    rhat: np.ndarray  # [*event] sqrt(1 + B / W)
    excess_z: np.ndarray  # [*event] (B / W - 1 / M) in its standard deviations under independence
    flagged: np.ndarray  # [*event] bool: excess_z above EXCESS_Z_FLAG


def nested_rhat(draws: np.ndarray, superchain_size: int) -> NestedRhat:
    """Nested R-hat of one draw per chain, ``draws`` ``(num_chains, *event)``, where
    consecutive groups of ``superchain_size`` chains shared their start.

    With ``K`` superchains of ``M`` chains, ``B`` is the variance of the superchain
    means and ``W`` the mean variance within a superchain; ``nR = sqrt(1 + B / W)``.
    Chains that have forgotten their start are independent draws, for which ``B / W``
    is about ``1 / M`` with standard deviation about ``sqrt(2 / (K - 1)) / M`` (the
    variance of ``K`` means of ``M`` draws); a walk too short to forget its start
    leaves the chains of a superchain alike, and ``B / W`` above that.
    """
    x = np.asarray(draws, np.float64)
    M = int(superchain_size)
    if M < 2 or x.shape[0] % M or x.shape[0] // M < 2:
        raise ValueError(
            f"nested R-hat needs at least 2 superchains of at least 2 chains; got "
            f"{x.shape[0]} chains in groups of {M}."
        )
    K = x.shape[0] // M
    x = x.reshape(K, M, *x.shape[1:])
    between = np.var(x.mean(axis=1), axis=0, ddof=1)
    within = np.mean(np.var(x, axis=1, ddof=1), axis=0)
    ratio = between / np.maximum(within, 1e-300)
    excess_z = (ratio - 1.0 / M) / (np.sqrt(2.0 / (K - 1)) / M)
    return NestedRhat(np.sqrt(1.0 + ratio), excess_z, excess_z > EXCESS_Z_FLAG)
