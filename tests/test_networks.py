import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_diffusion import EnergyNetwork, ResidualMLP, UNet
from numpyro_diffusion.networks import accepts_single_examples, network_config, network_from_config

KEY = jax.random.PRNGKey(0)


def init_apply(net, x, cond=None):
    t = jnp.arange(x.shape[0], dtype=jnp.int32)
    params = net.init(KEY, x, t, cond)
    return params, net.apply(params, x, t, cond)


def test_residual_mlp_shapes_and_zero_initialised_output():
    x = jax.random.normal(KEY, (4, 2))
    _, out = init_apply(ResidualMLP(), x)
    assert out.shape == (4, 2)
    np.testing.assert_array_equal(out, 0.0)
    _, out = init_apply(ResidualMLP(hidden=16, num_blocks=2, zero_init_output=False), x)
    assert float(jnp.abs(out).sum()) > 0


def test_class_conditioning_with_a_null_class():
    net = ResidualMLP(hidden=16, num_blocks=1, num_classes=3, zero_init_output=False)
    x = jnp.ones((2, 2))
    params, with_class = init_apply(net, x, jnp.array([0, 1]))
    t = jnp.zeros(2, jnp.int32)
    unconditional = net.apply(params, x, t, None)
    null = net.apply(params, x, t, jnp.array([3, 3]))
    np.testing.assert_allclose(unconditional, null, rtol=1e-6)
    assert not np.allclose(with_class, unconditional)


@pytest.mark.parametrize("num_classes", [None, 3])
@pytest.mark.parametrize("energy", [False, True])
def test_one_example_unbatched_equals_its_row_of_the_batch(num_classes, energy):
    base = ResidualMLP(hidden=16, num_blocks=2, num_classes=num_classes, zero_init_output=False)
    net = EnergyNetwork(base) if energy else base
    x = jax.random.normal(jax.random.PRNGKey(0), (5, 2, 3))
    t = jnp.arange(5)
    cond = None if num_classes is None else jnp.array([0, 1, 2, 3, 1])
    params = net.init(jax.random.PRNGKey(1), x, t, cond)
    batch = net.apply(params, x, t, cond)
    one_by_one = jax.vmap(
        lambda xi, ti, ci: net.apply(params, xi, ti, ci), (0, 0, None if cond is None else 0)
    )(x, t, cond)
    assert one_by_one.shape == batch.shape == ((5,) if energy else (5, 2, 3))
    np.testing.assert_allclose(one_by_one, batch, rtol=1e-5, atol=1e-6)
    assert accepts_single_examples(net) and not accepts_single_examples(UNet(base_channels=8))


def test_conditioning_an_unconditional_network_is_refused():
    with pytest.raises(ValueError, match="num_classes=K"):
        init_apply(ResidualMLP(hidden=8, num_blocks=1), jnp.ones((2, 2)), jnp.array([0, 1]))


@pytest.mark.slow
@pytest.mark.parametrize("size", [8, 16, 32, 64])
def test_unet_handles_8_to_64_pixels(size):
    net = UNet(base_channels=8, channel_mults=(1, 2), num_classes=10, time_embed_dim=16)
    x = jnp.ones((2, size, size, 1))
    _, out = init_apply(net, x, jnp.array([1, 10]))
    assert out.shape == x.shape


def test_unet_refuses_sizes_it_cannot_halve():
    with pytest.raises(ValueError, match="divisible by 4"):
        init_apply(UNet(base_channels=8, channel_mults=(1, 2, 2)), jnp.ones((1, 6, 6, 1)))


@pytest.mark.parametrize(
    "base",
    [
        ResidualMLP(hidden=16, num_blocks=1),
        pytest.param(UNet(base_channels=8), marks=pytest.mark.slow),
    ],
)
def test_energy_wrapper_forms(base):
    shape = (3, 2) if isinstance(base, ResidualMLP) else (3, 8, 8, 1)
    x = jax.random.normal(KEY, shape)
    _, dae = init_apply(EnergyNetwork(base, "dae"), x)
    assert dae.shape == (3,)
    # zero-initialised output: E_raw = ||0 - x||^2
    np.testing.assert_allclose(dae, jnp.sum(x**2, axis=tuple(range(1, x.ndim))), rtol=1e-5)
    l2 = EnergyNetwork(base.clone(zero_init_output=False), "l2")
    _, out = init_apply(l2, x)
    assert out.shape == (3,) and bool(jnp.all(out >= 0))


def test_energy_wrapper_refusals():
    with pytest.raises(ValueError, match="zero_init_output=False"):
        init_apply(EnergyNetwork(ResidualMLP(hidden=8), "l2"), jnp.ones((1, 2)))
    with pytest.raises(ValueError, match="unknown energy form 'l1'"):
        init_apply(EnergyNetwork(ResidualMLP(hidden=8), "l1"), jnp.ones((1, 2)))


def test_config_round_trip():
    for net in (
        EnergyNetwork(ResidualMLP(hidden=16, num_blocks=2, num_classes=4), "dae"),
        UNet(base_channels=8, channel_mults=(1, 2, 2), num_classes=10),
    ):
        assert network_from_config(network_config(net)) == net
    with pytest.raises(ValueError, match="network=..."):
        network_from_config({"class": "MyNet"})


@pytest.mark.parametrize("size, kernel, stride", [(8, 3, 1), (8, 3, 2), (7, 3, 2), (4, 1, 1)])
def test_patch_conv_equals_flax_conv(size, kernel, stride):
    import flax.linen as nn

    from numpyro_diffusion.networks import PatchConv

    x = jax.random.normal(KEY, (2, size, size, 5))
    conv = nn.Conv(6, (kernel, kernel), strides=(stride, stride))
    params = conv.init(jax.random.PRNGKey(1), x)
    patched = PatchConv(6, (kernel, kernel), (stride, stride)).apply(params, x)
    np.testing.assert_allclose(patched, conv.apply(params, x), atol=1e-5)


def test_unet_with_flax_convolutions_has_parameters_of_the_same_shapes():
    x = jnp.ones((2, 8, 8, 1))
    shapes = [
        sorted(
            v.shape for v in jax.tree.leaves(init_apply(UNet(base_channels=8, patch_conv=p), x)[0])
        )
        for p in (True, False)
    ]
    assert shapes[0] == shapes[1]
