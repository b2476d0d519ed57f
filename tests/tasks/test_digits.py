import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_diffusion import CheckpointError
from numpyro_diffusion.tasks.digits import (
    load_classifier,
    load_digits_data,
    save_classifier,
    train_classifier,
)


def test_splits_are_disjoint_stratified_and_scaled():
    train, held = load_digits_data("train"), load_digits_data("held_out")
    everything = load_digits_data("all")
    assert train.images.shape[1:] == (8, 8, 1)
    assert len(train.labels) + len(held.labels) == len(everything.labels) == 1797
    assert train.images.min() == -1.0 and train.images.max() == 1.0
    counts = np.bincount(held.labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37
    seen = {im.tobytes() for im in train.images}
    assert sum(im.tobytes() in seen for im in held.images) < 10  # a few digits repeat
    with pytest.raises(ValueError, match="unknown split"):
        load_digits_data("test")


def test_classifier_learns_the_digits_and_round_trips(tmp_path):
    net, params = train_classifier(load_digits_data("train"), jax.random.PRNGKey(0), num_steps=1500)
    held = load_digits_data("held_out")
    accuracy = float(
        np.mean(np.argmax(net.apply(params, jnp.asarray(held.images)), -1) == held.labels)
    )
    assert accuracy > 0.95
    assert net.apply(params, jnp.asarray(held.images[:2]), features=True).shape == (2, 64)
    save_classifier(tmp_path / "c.npz", net, params)
    net2, params2 = load_classifier(tmp_path / "c.npz")
    np.testing.assert_allclose(
        net2.apply(params2, held.images[:4]), net.apply(params, held.images[:4]), rtol=1e-6
    )
    from numpyro_diffusion import load

    with pytest.raises(CheckpointError, match="format 'numpyro_diffusion.digit_classifier'"):
        load(tmp_path / "c.npz")
