"""Constructive TSP heuristics (each followed by 2-opt in the benchmark)."""

from __future__ import annotations

import numpy as np

from numpyro_diffusion.tasks.tsp.decode import distance_matrix, greedy_tour

__all__ = ["nearest_neighbour", "farthest_insertion", "greedy_edge", "random_tour", "BASELINES"]


def nearest_neighbour(coords, rng=None) -> np.ndarray:
    """From city 0, always to the nearest unvisited city."""
    d = distance_matrix(coords)
    n = d.shape[0]
    tour, visited = [0], np.zeros(n, bool)
    visited[0] = True
    for _ in range(n - 1):
        row = np.where(visited, np.inf, d[tour[-1]])
        nxt = int(np.argmin(row))
        tour.append(nxt)
        visited[nxt] = True
    return np.asarray(tour)


def farthest_insertion(coords, rng=None) -> np.ndarray:
    """Insert the city farthest from the tour where it lengthens the tour least."""
    d = distance_matrix(coords)
    n = d.shape[0]
    a, b = np.unravel_index(np.argmax(d), d.shape)
    tour = [int(a), int(b)]
    to_tour = np.minimum(d[a], d[b])
    in_tour = np.zeros(n, bool)
    in_tour[[a, b]] = True
    while len(tour) < n:
        k = int(np.argmax(np.where(in_tour, -np.inf, to_tour)))
        t = np.asarray(tour)
        cost = d[t, k] + d[k, np.roll(t, -1)] - d[t, np.roll(t, -1)]
        tour.insert(int(np.argmin(cost)) + 1, k)
        in_tour[k] = True
        to_tour = np.minimum(to_tour, d[k])
    tour = np.asarray(tour)
    return np.roll(tour, -int(np.flatnonzero(tour == 0)[0]))


def greedy_edge(coords, rng=None) -> np.ndarray:
    """Shortest edges first (the greedy decoder with uniform scores)."""
    n = np.asarray(coords).shape[0]
    return greedy_tour(np.ones((n, n)), coords)


def random_tour(coords, rng=None) -> np.ndarray:
    """A uniformly random permutation starting at city 0."""
    rng = np.random.default_rng(0) if rng is None else rng
    n = np.asarray(coords).shape[0]
    return np.concatenate([[0], 1 + rng.permutation(n - 1)])


BASELINES = {
    "nearest neighbour": nearest_neighbour,
    "farthest insertion": farthest_insertion,
    "greedy edge": greedy_edge,
    "random": random_tour,
}
