"""The shipped land-cover prior end to end: draws look like maps, and the posterior
segments held-out city B's images better than colour clustering."""

import jax
import numpy as np
import pytest

from numpyro_diffusion.tasks import segmentation as seg

pytestmark = pytest.mark.slow


def test_prior_draws_are_near_one_hot_maps_of_every_class():
    prior = seg.load_segmentation_prior()
    assert prior.event_shape == (32, 32, len(seg.CLASSES))
    x = np.asarray(prior.sample(jax.random.PRNGKey(0), 4, levels=100))
    # a trained prior puts each pixel near a corner of the one-hot cube
    assert np.mean(np.abs(np.abs(x) - 1.0) < 0.5) > 0.9
    share = np.bincount(x.argmax(-1).ravel(), minlength=len(seg.CLASSES)) / x[..., 0].size
    assert np.all(share > 0.01)


def test_the_posterior_beats_colour_clustering_on_the_held_out_city():
    city = seg.CITIES["B"]
    k_maps, k_render, k_run = jax.random.split(jax.random.PRNGKey(3), 3)
    truth = seg.generate_maps(k_maps, 2, city)
    images = seg.render(k_render, truth, city)
    clustered = seg.segment(k_run, images, city=city, method="clustering")
    posterior = seg.segment(k_run, images, city=city, method="annealed", num_samples=6)
    assert posterior.probs.shape == (2, 32, 32, 6) and posterior.label_draws.shape[:2] == (6, 2)
    np.testing.assert_allclose(posterior.probs.sum(-1), 1.0, rtol=1e-5)
    # the same pixels scored by both: the paired difference over 2048 pixels
    gain = (posterior.labels == truth).astype(float) - (clustered.labels == truth)
    assert gain.mean() > max(0.02, 3 * gain.std() / np.sqrt(gain.size))
