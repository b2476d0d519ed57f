"""The TSP relaxation as a NumPyro program, solved by plug-and-play or annealed MCMC."""

from __future__ import annotations

import sys
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
    batch_size: int = 32,
    chain_method: str = "vectorized",
    progress_bar: bool = False,
) -> TSPResult:
    """Tours for ``coords`` ``(B, N, 2)`` (or ``(N, 2)``) in the unit square.

    ``method="plug_and_play"``: Graikos et al.'s ``num_steps`` Adam steps on the
    denoising loss over annealed levels, ``num_samples`` restarts per instance, solved
    ``batch_size`` (instance, restart) problems at a time in one compiled program;
    ``"annealed"``: annealed MCMC (U-HMC) with ``num_samples`` chains per instance.
    Each estimate of the adjacency is decoded greedily (and improved by 2-opt with
    ``two_opt``); the shortest tour of an instance is kept. ``prior``: a diffusion
    model of tour images (the shipped one for ``prior_cities`` by default, whose image
    size it sets). ``chain_method="sharded"`` splits each plug-and-play batch (or each
    instance's chains) over every device of every process (``jax.distributed``);
    ``progress_bar`` counts the solved batches (or instances) on stderr.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}.")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    prior = load_tsp_prior(prior_cities) if prior is None else prior
    coords = check_coords(coords, expected_cities=prior_cities)
    size = prior.event_shape[0]
    pieces = [edge_images(c, size) for c in coords]
    if method == "plug_and_play":
        candidates = _plug_and_play(
            rng_key, prior, pieces, num_samples, num_steps, batch_size, chain_method, progress_bar
        )
    else:
        candidates = [
            _annealed(jax.random.fold_in(rng_key, b), prior, p, num_samples, chain_method)
            for b, p in enumerate(_progress(pieces, progress_bar, "instance"))
        ]
    tours, lengths, adjacencies = [], [], []
    for c, options in zip(coords, candidates, strict=True):
        best = None
        for a in options:
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


def _progress(items, show: bool, unit: str):
    if not show:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc="TSP", unit=unit, file=sys.stderr)


def _plug_and_play(
    rng_key, prior, pieces, num_samples, num_steps, batch_size, chain_method, progress_bar
) -> list:
    """Relaxed adjacencies ``[B][num_samples] (N, N)``: every (instance, restart) pair is
    one problem; chunks of ``batch_size`` run in one program (the last one padded, so
    that one compilation serves all)."""
    problems = [(b, s) for b in range(len(pieces)) for s in range(num_samples)]
    batch_size = min(batch_size, len(problems))
    n = int(pieces[0].pairs.max()) + 1
    out: list[list] = [[] for _ in pieces]
    starts = range(0, len(problems), batch_size)
    for start in _progress(starts, progress_bar, "batch"):
        chunk = problems[start : start + batch_size]
        padded = chunk + [chunk[-1]] * (batch_size - len(chunk))
        edges = jnp.asarray(np.stack([pieces[b].edges for b, _ in padded]))
        cities = jnp.asarray(np.stack([pieces[b].cities for b, _ in padded]))
        k_init, k_run = jax.random.split(jax.random.fold_in(rng_key, start))
        # Start near the uniform adjacency: random logits would favour random pairs.
        logits = 0.01 * jax.random.normal(k_init, (batch_size, n, n))
        result = nd.plug_and_play(
            relaxation_model,
            k_run,
            prior,
            edges,
            cities,
            pieces[0].pairs,
            num_steps=num_steps,
            optimizer=PNP_OPTIMIZER,
            init_values={"logits": logits},
            in_axes=(None, 0, 0, None),
            chain_method=chain_method,
        )
        a = np.asarray(jax.vmap(adjacency)(result.params["logits"]))
        for (b, _), a_problem in zip(chunk, a, strict=False):
            out[b].append(a_problem)
    return out


def _annealed(rng_key, prior, pieces, num_chains, chain_method) -> list:
    """Relaxed adjacencies ``[num_chains] (N, N)`` from annealed U-HMC draws."""
    args = (prior, jnp.asarray(pieces.edges), jnp.asarray(pieces.cities), pieces.pairs)
    sampler = nd.AnnealedMCMC(
        relaxation_model,
        "uhmc",
        num_chains,
        3,
        levels=50,
        progress_bar=False,
        chain_method=chain_method,
    )
    sampler.run(rng_key, *args, logit_scale=3.0)
    return list(np.asarray(jax.vmap(adjacency)(sampler.get_samples()["logits"])))
