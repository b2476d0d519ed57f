"""The TSP task's pieces: rendering, decoding, 2-opt, baselines, input checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_diffusion.tasks import tsp


def test_an_edge_is_drawn_on_the_pixels_it_crosses():
    coords = np.array([[0.1, 0.5], [0.9, 0.5], [0.5, 0.05], [0.5, 0.95]])
    pieces = tsp.edge_images(coords, size=10)
    k = int(np.flatnonzero((pieces.pairs[:, 0] == 0) & (pieces.pairs[:, 1] == 1))[0])
    edge = pieces.edges[k]
    # the line y = 0.5 runs half a pixel from the centres of rows 4 and 5: half covered
    np.testing.assert_allclose(edge[4:6, 1:9], 0.25, atol=1e-6)
    assert np.all(edge[:3] == 0) and np.all(edge[7:] == 0)
    assert 0 < edge[4, 0] < 0.25  # the end of the line, anti-aliased
    # a city on a pixel centre is a full disc there; pinned to 1 in any image
    image = np.asarray(tsp.adjacency_image(jnp.ones(len(pieces.pairs)), pieces))[..., 0]
    assert image.shape == (10, 10) and image.min() >= -1 and image.max() <= 1
    np.testing.assert_allclose(image[pieces.cities == 1.0], 1.0)
    empty = np.asarray(tsp.adjacency_image(jnp.zeros(len(pieces.pairs)), pieces))[..., 0]
    np.testing.assert_allclose(empty[pieces.cities == 0.0], -1.0)


def test_the_image_is_differentiable_in_the_weights():
    coords = tsp.random_instances(jax.random.PRNGKey(0), 1, 8)[0]
    pieces = tsp.edge_images(coords, size=16)
    weights = jnp.full(len(pieces.pairs), 0.1)
    grad = jax.grad(lambda w: jnp.sum(tsp.adjacency_image(w, pieces)))(weights)
    # away from the cities and below saturation the image is 2 * sum_e w_e edge_e - 1
    expected = 2 * np.sum(pieces.edges * (1 - pieces.cities), axis=(1, 2))
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-5)


def test_render_tours_is_the_image_of_the_tour_adjacency():
    coords = tsp.random_instances(jax.random.PRNGKey(1), 2, 12)
    tours = np.stack([tsp.nearest_neighbour(c) for c in coords])
    fast = tsp.render_tours(coords, tours, size=16)
    for c, tour, image in zip(coords, tours, fast, strict=True):
        pieces = tsp.edge_images(c, size=16)
        weights = tsp.tour_adjacency(tour, pieces.pairs)
        assert weights.sum() == 12
        np.testing.assert_allclose(image, tsp.adjacency_image(weights, pieces), atol=1e-5)


@pytest.mark.parametrize("seed", range(5))
def test_decoding_gives_a_permutation_and_two_opt_never_lengthens(seed):
    rng = np.random.default_rng(seed)
    coords = tsp.random_instances(jax.random.PRNGKey(seed), 1, 30)[0]
    scores = rng.random((30, 30))
    tour = tsp.greedy_tour(scores, coords)
    assert sorted(tour) == list(range(30)) and tour[0] == 0
    for start in (tour, tsp.random_tour(coords, rng)):
        better = tsp.two_opt(coords, start)
        assert sorted(better) == list(range(30))
        before, after = tsp.tour_length(coords[None], np.stack([start, better]))
        assert after <= before + 1e-12


def test_baselines_are_permutations_and_two_opt_brings_them_near_lkh():
    coords = tsp.random_instances(jax.random.PRNGKey(2), 8, 20)
    reference = tsp.tour_length(coords, tsp.reference_tours(coords, runs=3))
    for name, build in tsp.BASELINES.items():
        tours = np.stack([tsp.two_opt(c, build(c)) for c in coords])
        assert all(sorted(t) == list(range(20)) for t in tours), name
        gaps = tsp.gap(tsp.tour_length(coords, tours), reference)
        assert np.all(gaps > -1e-9) and gaps.mean() < 0.15, (name, gaps)


def test_bad_coordinates_are_refused_or_warned_about():
    with pytest.raises(ValueError, match=r"shape \(B, N, 2\)"):
        tsp.check_coords(np.zeros((3, 5, 3)))
    with pytest.raises(ValueError, match="NaN"):
        tsp.check_coords(np.full((1, 5, 2), np.nan))
    with pytest.raises(ValueError, match="unit square"):
        tsp.check_coords(np.full((1, 5, 2), 2.0))
    with pytest.warns(UserWarning, match="trained on tours of 50 cities"):
        tsp.check_coords(np.full((1, 20, 2), 0.5), expected_cities=50)


def test_the_shipped_prior_beats_random_starts_with_two_opt():
    coords = tsp.random_instances(jax.random.PRNGKey(7), 8, 50)
    result = tsp.solve(jax.random.PRNGKey(0), coords, num_steps=256, batch_size=8)
    assert all(sorted(t) == list(range(50)) for t in result.tours)
    np.testing.assert_allclose(result.lengths, tsp.tour_length(coords, result.tours))
    rng = np.random.default_rng(0)
    random = tsp.tour_length(
        coords, np.stack([tsp.two_opt(c, tsp.random_tour(c, rng)) for c in coords])
    )
    difference = result.lengths - random  # paired over instances
    se = difference.std(ddof=1) / np.sqrt(len(difference))
    assert difference.mean() < -2 * se, (difference.mean(), se)


@pytest.mark.compile_bound
def test_a_padded_batch_gives_row_normalised_relaxations_and_tours():
    prior = tsp.load_tsp_prior(50)
    coords = tsp.random_instances(jax.random.PRNGKey(8), 3, 50)
    result = tsp.solve(jax.random.PRNGKey(1), coords, prior=prior, num_steps=8, batch_size=2)
    assert result.tours.shape == (3, 50) and result.adjacency.shape == (3, 50, 50)
    np.testing.assert_allclose(result.adjacency.sum(-1), 1.0, atol=1e-5)  # rows sum to one
    assert np.all(np.diagonal(result.adjacency, axis1=1, axis2=2) == 0)
    assert all(sorted(t) == list(range(50)) for t in result.tours)
    with pytest.raises(ValueError, match="batch_size"):
        tsp.solve(jax.random.PRNGKey(1), coords, prior=prior, batch_size=0)
