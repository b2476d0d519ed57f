"""The demo's shipped checkpoints load and sample what they were trained on
(regenerate them with scripts/train_demo_models.py)."""

import jax
import numpy as np
import pytest

from numpyro_diffusion.tasks.demo import load_demo_models


@pytest.fixture(scope="module")
def models():
    return load_demo_models()


def test_shipped_models_are_energy_models_on_the_demo_schedule(models):
    for model in models:
        assert model.has_energy and model.event_shape == (2,)
        assert model.schedule.num_steps == 100


def test_ring_samples_lie_on_the_ring_in_every_mode(models):
    x = np.asarray(models[0].sample(jax.random.PRNGKey(0), 2000))
    radius = np.linalg.norm(x, axis=1)
    assert np.mean(np.abs(radius - 0.5) < 0.1) > 0.9
    mode = np.round(np.arctan2(x[:, 1], x[:, 0]) / (2 * np.pi / 8)).astype(int) % 8
    shares = np.bincount(mode, minlength=8) / len(mode)
    assert shares.min() > 0.06 and shares.max() < 0.2, shares


def test_bar_samples_fill_the_bar(models):
    x = np.asarray(models[1].sample(jax.random.PRNGKey(1), 2000))
    inside = (np.abs(x[:, 0]) < 0.25) & (np.abs(x[:, 1]) < 1.05)
    assert inside.mean() > 0.9
    assert 0.35 < np.mean(x[:, 1] > 0) < 0.65


def test_plotting_the_demo_leaves_the_matplotlib_backend_alone(tmp_path):
    import matplotlib

    from numpyro_diffusion.tasks.demo import plot_demo
    from numpyro_diffusion.tasks.toy2d import grid_density, ring

    before = matplotlib.get_backend()
    truth = grid_density(ring().log_prob, size=101)
    plot_demo(truth, {"draws": np.zeros((10, 2))}, str(tmp_path / "demo.png"))
    assert matplotlib.get_backend() == before and (tmp_path / "demo.png").exists()
