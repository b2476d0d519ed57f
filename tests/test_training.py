import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from numpyro_diffusion import (
    EnergyNetwork,
    GaussianMixtureDiffusion,
    ResidualMLP,
    VPSchedule,
    train,
)

SCHEDULE = VPSchedule.cosine(100)
CENTRES = np.array([[-1.0, 0.0], [1.0, 0.0]])


def two_blobs(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    return CENTRES[labels] + 0.1 * rng.standard_normal((n, 2)), labels


@pytest.fixture(scope="module")
def energy_model():
    data, _ = two_blobs()
    return train(
        EnergyNetwork(ResidualMLP(hidden=64, num_blocks=2)),
        data,
        schedule=SCHEDULE,
        parameterization="energy",
        num_steps=600,
        batch_size=256,
        optimizer=optax.adam(3e-3),
        rng_key=jax.random.PRNGKey(0),
        ema_decay=0.99,
        progress_bar=False,
    )


def test_energy_model_loss_falls_and_samples_land_on_the_data(energy_model):
    losses = energy_model.training_losses
    assert losses.shape == (600,)
    assert losses[-100:].mean() < 0.6 * losses[:20].mean()
    x = np.asarray(energy_model.sample(jax.random.PRNGKey(1), 2000))
    dist_to_centre = np.min(np.linalg.norm(x[:, None] - CENTRES, axis=-1), axis=1)
    assert np.mean(dist_to_centre < 0.4) > 0.85
    # both blobs are found, in roughly equal shares
    left = np.mean(x[:, 0] < 0)
    assert 0.3 < left < 0.7
    assert energy_model.has_energy


def test_energy_is_lower_on_the_data_than_between_the_blobs(energy_model):
    e = jax.vmap(energy_model.energy, (0, None))(jnp.array([[1.0, 0.0], [0.0, 0.0]]), 0)
    assert float(e[0]) < float(e[1])


def _short_run(key, parameterization="eps", **kwargs):
    data = kwargs.pop("data", None)
    data = two_blobs(256)[0] if data is None else data
    net = kwargs.pop("network", ResidualMLP(hidden=16, num_blocks=1))
    return train(
        net,
        data,
        schedule=SCHEDULE,
        parameterization=parameterization,
        num_steps=kwargs.pop("num_steps", 30),
        batch_size=kwargs.pop("batch_size", 32),
        optimizer=optax.adam(1e-3),
        rng_key=key,
        progress_bar=False,
        steps_per_call=7,
        **kwargs,
    )


def test_same_key_same_model_and_remainder_steps_counted():
    a = _short_run(jax.random.PRNGKey(3))
    b = _short_run(jax.random.PRNGKey(3))
    c = _short_run(jax.random.PRNGKey(4))
    assert a.training_losses.shape == (30,)
    jax.tree.map(np.testing.assert_array_equal, a.params, b.params)
    assert not np.allclose(a.training_losses, c.training_losses)


def test_an_interrupted_training_resumes_to_the_same_model(tmp_path):
    from numpyro_diffusion.errors import CheckpointError

    path = str(tmp_path / "state.npz")
    whole = _short_run(jax.random.PRNGKey(3))
    first = _short_run(jax.random.PRNGKey(3), num_steps=14, resume_path=path, save_every=7)
    assert first.training_losses.shape == (14,)
    resumed = _short_run(jax.random.PRNGKey(3), resume_path=path, save_every=7)
    jax.tree.map(np.testing.assert_array_equal, resumed.params, whole.params)
    np.testing.assert_array_equal(resumed.training_losses, whole.training_losses)
    (tmp_path / "state.npz").write_bytes(b"not a state")
    with pytest.raises(CheckpointError, match="cannot resume training"):
        _short_run(jax.random.PRNGKey(3), resume_path=path)


def test_a_batch_of_keys_trains_independent_models_in_one_program(tmp_path):
    """Each of M models trained together is the model its key and dataset give alone
    (to float rounding: the batched program sums in another order)."""
    keys = jax.random.split(jax.random.PRNGKey(5), 2)
    datasets = np.stack([two_blobs(256, seed=s)[0] for s in range(2)])
    path = str(tmp_path / "state.npz")
    steps = dict(num_steps=14)  # two calls of 7 steps: one compiled chunk
    together = _short_run(
        keys, data=datasets, ema_decay=0.9, resume_path=path, save_every=7, **steps
    )
    assert isinstance(together, list) and len(together) == 2
    for key, data, model in zip(keys, datasets, together, strict=True):
        alone = _short_run(key, data=data, ema_decay=0.9, **steps)
        assert model.training_losses.shape == (14,)
        np.testing.assert_allclose(model.training_losses, alone.training_losses, rtol=1e-4)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
            model.params,
            alone.params,
        )
    # the saved state holds both; a longer run continues it
    longer = _short_run(keys, data=datasets, ema_decay=0.9, resume_path=path, num_steps=21)
    np.testing.assert_array_equal(longer[1].training_losses[:14], together[1].training_losses)
    with pytest.raises(ValueError, match="one dataset per key"):
        _short_run(keys, data=datasets[0])


@pytest.mark.parametrize("parameterization", ["eps", "x0", "v", "score"])
def test_every_parameterization_learns_the_exact_noise(parameterization):
    """Data from N(0, 0.3^2 I): the exact E[eps | x_t] is known. The trained noise
    prediction's error must be well below that of predicting zero (the exact eps's size),
    and the loss must fall."""
    exact = GaussianMixtureDiffusion([[0.0, 0.0]], [[0.3, 0.3]], schedule=SCHEDULE)
    data = exact.sample(jax.random.PRNGKey(1), 4096)
    model = train(
        ResidualMLP(hidden=32, num_blocks=1),
        data,
        schedule=SCHEDULE,
        parameterization=parameterization,
        num_steps=400,
        batch_size=128,
        optimizer=optax.adam(3e-3),
        rng_key=jax.random.PRNGKey(0),
        progress_bar=False,
    )
    assert model.parameterization == parameterization
    losses = model.training_losses
    assert losses[-50:].mean() < 0.8 * losses[:10].mean()
    key_t, key_x = jax.random.split(jax.random.PRNGKey(2))
    t = jax.random.randint(key_t, (512,), 0, SCHEDULE.num_steps)
    x_t = jax.vmap(lambda k, s: exact.sample(k, 1, t=s)[0])(jax.random.split(key_x, 512), t)
    target = jax.vmap(exact.eps)(x_t, t)
    error = float(jnp.mean(jnp.sum((jax.vmap(model.eps)(x_t, t) - target) ** 2, -1)))
    assert error < 0.25 * float(jnp.mean(jnp.sum(target**2, -1))), error


def test_class_conditional_training_with_label_dropout():
    _, labels = two_blobs(256)
    model = _short_run(
        jax.random.PRNGKey(0),
        network=ResidualMLP(hidden=16, num_blocks=1, num_classes=2),
        labels=labels,
        p_uncond=0.2,
    )
    x = jnp.zeros(2)
    assert model.eps(x, 5, cond=1).shape == (2,)
    assert model.eps(x, 5).shape == (2,)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(labels=np.zeros(256, int)), "network has no classes"),
        (dict(p_uncond=0.1), "needs labels"),
        (dict(p_uncond=1.5), "p_uncond must lie in"),
        (dict(ema_decay=1.0), "ema_decay must lie in"),
        (dict(parameterization="x_start"), "unknown parameterization"),
        (dict(batch_size=10_000), "batch_size \\(10000\\) exceeds the 256 examples"),
    ],
)
def test_bad_training_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _short_run(jax.random.PRNGKey(0), **kwargs)


def test_labels_out_of_range():
    with pytest.raises(ValueError, match="labels must lie in 0 .. 1"):
        _short_run(
            jax.random.PRNGKey(0),
            network=ResidualMLP(hidden=8, num_blocks=1, num_classes=2),
            labels=np.full(256, 5),
        )
