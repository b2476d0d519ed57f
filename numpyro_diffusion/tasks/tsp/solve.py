"""The TSP relaxation as a NumPyro program, solved by plug-and-play or annealed MCMC."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from jax import Array
from numpyro.distributions import constraints

import numpyro_diffusion as nd
from numpyro_diffusion.tasks.shipped import load_shipped_prior
from numpyro_diffusion.tasks.tsp.decode import greedy_tour
from numpyro_diffusion.tasks.tsp.decode import two_opt as improve_by_two_opt
from numpyro_diffusion.tasks.tsp.instances import check_coords, tour_length
from numpyro_diffusion.tasks.tsp.render import CITY_VALUE, edge_images

__all__ = ["TSPResult", "relaxation_model", "adjacency", "solve", "load_tsp_prior", "METHODS"]

METHODS = ("plug_and_play", "annealed")
# Large, momentum-free steps on the logits (each step's denoising gradient is noisy and
# the relaxation must move far from uniform within a few hundred steps).
PNP_OPTIMIZER = optax.adam(optax.linear_schedule(0.1, 0.01, 1000), b1=0.0, b2=0.9)


class TSPResult(NamedTuple):
    tours: np.ndarray  # [B, N] permutations starting at city 0
    lengths: np.ndarray  # [B]
    adjacency: np.ndarray  # [B, N, N] the relaxed adjacency the tours were decoded from


def adjacency(logits: Array) -> Array:
    """Row-normalised adjacency ``(N, N)`` from logits, the diagonal masked: each city
    spreads one unit of weight over the others (Graikos et al.)."""
    n = logits.shape[-1]
    return jax.nn.softmax(jnp.where(jnp.eye(n, dtype=bool), -jnp.inf, logits), axis=-1)


def relaxation_model(
    prior: Any, edges: Array, cities: Array, pairs: Array, logit_scale: float | None = None
) -> None:
    """One instance: latent logits ``(N, N)``, the image of ``A + A^T`` on the instance's
    edge images ``edges`` ``(E, H, W)`` with the cities ``(H, W)`` pinned, scored by the
    diffusion prior as a factor. The logits are flat (the point estimate's choice, as in
    Graikos et al.) or, with ``logit_scale``, ``Normal(0, logit_scale)`` (a sampler needs
    a proper density: a row's softmax ignores a shift of its logits)."""
    n = int(round((1 + (1 + 8 * pairs.shape[0]) ** 0.5) / 2))  # E = N (N - 1) / 2, static
    if logit_scale is None:
        base = dist.ImproperUniform(constraints.real, (), (n, n))
    else:
        base = dist.Normal(0.0, logit_scale).expand((n, n)).to_event(2)
    logits = numpyro.sample("logits", base)
    a = adjacency(logits)
    weights = a[pairs[:, 0], pairs[:, 1]] + a[pairs[:, 1], pairs[:, 0]]
    lines = jnp.clip(jnp.tensordot(weights, edges, axes=1), 0.0, 1.0)
    image = (2.0 * (lines * (1.0 - cities) + CITY_VALUE * cities) - 1.0)[..., None]
    nd.diffusion_factor("tour_image", prior, image)


def load_tsp_prior(num_cities: int = 50, size: int = 32):
    """The shipped prior for tours of ``num_cities`` cities at ``size`` pixels."""
    return load_shipped_prior(
        f"tsp{num_cities}_{size}px",
        "tsp",
        f"TSP prior for {num_cities} cities at {size} px",
        "scripts/train_tsp_prior.py",
    )


def solve(
    rng_key: Array,
    coords,
    *,
    method: str = "plug_and_play",
    num_samples: int = 1,
    two_opt: bool = True,
    prior: Any = None,
    num_steps: int = 256,
    prior_cities: int = 50,
) -> TSPResult:
    """Tours for ``coords`` ``(B, N, 2)`` (or ``(N, 2)``) in the unit square.

    ``method="plug_and_play"``: Graikos et al.'s ``num_steps`` Adam steps on the
    denoising loss over annealed levels, ``num_samples`` restarts; ``"annealed"``:
    annealed MCMC (U-HMC) with ``num_samples`` chains. Each estimate of the adjacency
    is decoded greedily (and improved by 2-opt with ``two_opt``); the shortest tour of
    an instance is kept. ``prior``: a diffusion model of tour images (the shipped one
    for ``prior_cities`` by default, whose image size it sets).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}.")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
    prior = load_tsp_prior(prior_cities) if prior is None else prior
    coords = check_coords(coords, expected_cities=prior_cities)
    size = prior.event_shape[0]
    tours, lengths, adjacencies = [], [], []
    for b, c in enumerate(coords):
        pieces = edge_images(c, size)
        args = (prior, jnp.asarray(pieces.edges), jnp.asarray(pieces.cities), pieces.pairs)
        key = jax.random.fold_in(rng_key, b)
        candidates = []
        if method == "plug_and_play":
            n = c.shape[0]
            for s in range(num_samples):
                k_init, k_run = jax.random.split(jax.random.fold_in(key, s))
                # Start near the uniform adjacency: random logits would favour random pairs.
                start = {"logits": 0.01 * jax.random.normal(k_init, (n, n))}
                result = nd.plug_and_play(
                    relaxation_model,
                    k_run,
                    *args,
                    num_steps=num_steps,
                    optimizer=PNP_OPTIMIZER,
                    init_values=start,
                )
                candidates.append(np.asarray(adjacency(result.params["logits"])))
        else:
            sampler = nd.AnnealedMCMC(
                relaxation_model, "uhmc", num_samples, 3, levels=50, progress_bar=False
            )
            sampler.run(key, *args, logit_scale=3.0)
            logits = sampler.get_samples()["logits"]
            candidates = list(np.asarray(jax.vmap(adjacency)(logits)))
        best = None
        for a in candidates:
            tour = greedy_tour(a, c)
            if two_opt:
                tour = improve_by_two_opt(c, tour)
            length = float(tour_length(c[None], tour[None])[0])
            if best is None or length < best[1]:
                best = (tour, length, a)
        tours.append(best[0])
        lengths.append(best[1])
        adjacencies.append(best[2])
    return TSPResult(np.stack(tours), np.asarray(lengths), np.stack(adjacencies))
