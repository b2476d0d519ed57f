"""From edge scores to tours: greedy edge insertion and 2-opt (NumPy)."""

from __future__ import annotations

import numpy as np

__all__ = ["greedy_tour", "two_opt", "distance_matrix"]


def distance_matrix(coords) -> np.ndarray:
    """``(N, N)`` Euclidean distances of one instance ``coords`` ``(N, 2)``."""
    c = np.asarray(coords, np.float64)
    return np.sqrt(np.sum((c[:, None] - c[None]) ** 2, axis=-1))


def greedy_tour(scores, coords) -> np.ndarray:
    """A tour ``(N,)`` built from a symmetric score matrix ``scores`` ``(N, N)``.

    Edges are taken in decreasing ``score / distance`` when both cities still have
    degree below 2 and the edge joins two different fragments (the paper's decoding);
    the fragments' free ends are then joined nearest first into one cycle. Always a
    permutation of ``0 .. N - 1`` starting at city 0.
    """
    d = distance_matrix(coords)
    n = d.shape[0]
    s = np.asarray(scores, np.float64)
    s = 0.5 * (s + s.T)
    i, j = np.triu_indices(n, 1)
    order = np.argsort(-(s[i, j] / np.maximum(d[i, j], 1e-12)), kind="stable")
    parent = np.arange(n)

    def root(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    degree = np.zeros(n, int)
    neighbours = [[] for _ in range(n)]
    added = 0
    for e in order:
        a, b = i[e], j[e]
        if degree[a] >= 2 or degree[b] >= 2:
            continue
        ra, rb = root(a), root(b)
        if ra == rb:
            continue
        parent[ra] = rb
        degree[a] += 1
        degree[b] += 1
        neighbours[a].append(b)
        neighbours[b].append(a)
        added += 1
        if added == n - 1:
            break
    # join the fragments' free ends, nearest pair of different fragments first
    while added < n - 1:
        ends = np.flatnonzero(degree < 2)
        best = None
        for a in ends:
            for b in ends:
                if a < b and root(a) != root(b) and (best is None or d[a, b] < d[best]):
                    best = (a, b)
        a, b = best
        parent[root(a)] = root(b)
        degree[a] += 1
        degree[b] += 1
        neighbours[a].append(b)
        neighbours[b].append(a)
        added += 1
    # walk the path from one end (the cycle closes between the two ends)
    start = int(np.flatnonzero(degree < 2)[0]) if n > 1 else 0
    tour, prev, cur = [start], -1, start
    for _ in range(n - 1):
        nxt = neighbours[cur][0] if neighbours[cur][0] != prev else neighbours[cur][-1]
        tour.append(nxt)
        prev, cur = cur, nxt
    tour = np.asarray(tour)
    return np.roll(tour, -int(np.flatnonzero(tour == 0)[0]))


def two_opt(coords, tour, max_iterations: int = 10_000) -> np.ndarray:
    """2-opt local search: reverse the segment of the best improving exchange until
    none improves (vectorised over all pairs). Never lengthens the tour."""
    d = distance_matrix(coords)
    tour = np.asarray(tour).copy()
    n = tour.shape[0]
    if n < 4:
        return tour
    for _ in range(max_iterations):
        a = tour
        b = np.roll(tour, -1)
        # gain of replacing edges (a_i, b_i) and (a_j, b_j) by (a_i, a_j) and (b_i, b_j)
        delta = (
            d[a[:, None], a[None, :]]
            + d[b[:, None], b[None, :]]
            - d[a, b][:, None]
            - d[a, b][None, :]
        )
        delta = np.triu(delta, 2)
        delta[0, n - 1] = 0.0  # the two edges share a city
        i, j = np.unravel_index(np.argmin(delta), delta.shape)
        if delta[i, j] >= -1e-10:
            break
        tour[i + 1 : j + 1] = tour[i + 1 : j + 1][::-1]
    return tour
