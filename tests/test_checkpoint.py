import gc
import os
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_diffusion import (
    CheckpointError,
    DiffusionModel,
    EnergyNetwork,
    ResidualMLP,
    UNet,
    VPSchedule,
    load,
    save,
)


def make_model(network, event_shape, parameterization, schedule):
    x = jnp.zeros((1, *event_shape))
    params = network.init(jax.random.PRNGKey(1), x, jnp.zeros(1, jnp.int32), None)
    params = jax.tree.map(lambda p: p + 0.01 * jnp.arange(p.size).reshape(p.shape), params)
    return DiffusionModel(network, params, schedule, parameterization, event_shape)


MODELS = [
    (EnergyNetwork(ResidualMLP(hidden=16, num_blocks=2)), (2,), "energy", VPSchedule.cosine(50)),
    pytest.param(
        UNet(base_channels=8, num_classes=10),
        (8, 8, 1),
        "eps",
        VPSchedule.linear(1000),
        marks=pytest.mark.slow,
    ),
]


@pytest.mark.parametrize("network, event_shape, parameterization, schedule", MODELS)
def test_round_trip_rebuilds_the_same_model(
    tmp_path, network, event_shape, parameterization, schedule
):
    model = make_model(network, event_shape, parameterization, schedule)
    path = tmp_path / "model.npz"
    save(path, model)
    loaded = load(path)
    assert loaded.network == model.network
    assert loaded.schedule == model.schedule
    assert loaded.parameterization == parameterization
    assert loaded.event_shape == event_shape
    x = jax.random.normal(jax.random.PRNGKey(0), event_shape)
    np.testing.assert_allclose(jax.jit(loaded.eps)(x, 7), jax.jit(model.eps)(x, 7), rtol=1e-6)
    assert [p for p in os.listdir(tmp_path) if p != "model.npz"] == []


def test_the_file_is_documented_npz(tmp_path):
    model = make_model(*MODELS[0])
    save(tmp_path / "m.npz", model)
    with np.load(tmp_path / "m.npz") as f:
        assert "__numpyro_diffusion__" in f.files
        assert any(k.startswith("params/") for k in f.files)


def test_missing_truncated_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load(tmp_path / "nope.npz")
    model = make_model(*MODELS[0])
    save(tmp_path / "m.npz", model)
    data = (tmp_path / "m.npz").read_bytes()
    (tmp_path / "half.npz").write_bytes(data[: len(data) // 2])
    (tmp_path / "cut.npz").write_bytes(data[:-30])  # the zip directory survives, a member not
    (tmp_path / "text.npz").write_text("hello")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)  # no file left open
        for name in ("half.npz", "cut.npz", "text.npz"):
            with pytest.raises(CheckpointError, match="truncated") as info:
                load(tmp_path / name)
            assert "allow_pickle" not in str(info.value)  # numpy's advice is not the user's
            gc.collect()
    np.savez(tmp_path / "other.npz", weights=np.ones(3))
    with pytest.raises(CheckpointError, match="not a numpyro_diffusion checkpoint"):
        load(tmp_path / "other.npz")


class Custom(nn.Module):
    @nn.compact
    def __call__(self, x, t, cond=None):
        return nn.Dense(x.shape[-1])(x)


def test_custom_network_is_passed_in(tmp_path):
    model = make_model(Custom(), (3,), "eps", VPSchedule.cosine(20))
    save(tmp_path / "c.npz", model)
    with pytest.raises(CheckpointError, match="network=..."):
        load(tmp_path / "c.npz")
    loaded = load(tmp_path / "c.npz", network=Custom())
    x = jnp.ones(3)
    np.testing.assert_allclose(loaded.eps(x, 2), model.eps(x, 2), rtol=1e-6)
    with pytest.raises(CheckpointError, match="do not fit"):
        load(tmp_path / "c.npz", network=ResidualMLP(hidden=4, num_blocks=1))


def test_a_failed_save_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    model = make_model(*MODELS[0])
    path = tmp_path / "m.npz"
    save(path, model)
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        save(path, model)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]
