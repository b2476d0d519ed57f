"""Flax networks: a residual MLP for vectors, a small U-Net for images, an energy wrapper.

Every network is called as ``network.apply(params, x, t, cond)`` on a batch:
``x`` of shape ``(B, *event_shape)``, integer ``t`` of shape ``(B,)`` and ``cond``
of shape ``(B,)`` or ``None``. Class-conditional networks (``num_classes`` set)
reserve the index ``num_classes`` for the null class of classifier-free guidance;
``cond=None`` means that null class. Networks with ``single_example_calls`` (the residual
MLP and its energy wrapper) also take one example unbatched: ``x`` of ``event_shape``,
scalar ``t`` and ``cond``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp
from jax import Array

__all__ = [
    "ResidualMLP",
    "UNet",
    "EnergyNetwork",
    "network_config",
    "network_from_config",
    "network_num_classes",
    "accepts_single_examples",
]


def sinusoidal_embedding(t: Array, dim: int) -> Array:
    """Transformer-style features of integer levels: ``(B,)`` -> ``(B, dim)``."""
    half = dim // 2
    freqs = jnp.exp(-math.log(10_000.0) * jnp.arange(half) / max(half - 1, 1))
    angles = t.astype(jnp.float32)[:, None] * freqs[None, :]
    emb = jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)
    return jnp.pad(emb, ((0, 0), (0, dim - 2 * half)))


class TimeClassEmbedding(nn.Module):
    """Learned embedding of the level and, optionally, the class: ``(B, dim)``."""

    dim: int
    num_classes: int | None = None

    @nn.compact
    def __call__(self, t: Array, cond: Array | None) -> Array:
        emb = nn.Dense(self.dim)(sinusoidal_embedding(t, self.dim))
        emb = nn.Dense(self.dim)(nn.swish(emb))
        if self.num_classes is None:
            if cond is not None:
                raise ValueError(
                    "this network was built without classes (num_classes=None) but was "
                    "given cond; rebuild it with num_classes=K to condition on labels."
                )
            return emb
        if cond is None:
            cond = jnp.full(t.shape, self.num_classes, dtype=jnp.int32)
        return emb + nn.Embed(self.num_classes + 1, self.dim)(cond.astype(jnp.int32))


def _output_init(zero: bool):
    return nn.initializers.zeros if zero else nn.linear.default_kernel_init


class ResidualMLP(nn.Module):
    """Residual MLP of Du et al.'s 2D experiments, for flat (or flattened) events.

    Blocks of LayerNorm, swish and Dense with the time (and class) embedding added,
    each with a skip connection; a zero-initialised output layer by default. Besides a
    batch (``x`` ``(B, *event_shape)``, ``t`` ``(B,)``) it takes one example (``x``
    ``event_shape``, ``t`` and ``cond`` scalars), the call a vmapped sampler makes.
    """

    hidden: int = 128
    num_blocks: int = 4
    time_embed_dim: int = 32
    num_classes: int | None = None
    zero_init_output: bool = True
    single_example_calls: ClassVar[bool] = True

    @nn.compact
    def __call__(self, x: Array, t: Array, cond: Array | None = None) -> Array:
        embed = TimeClassEmbedding(self.time_embed_dim, self.num_classes)
        if t.ndim == 0:  # one example
            emb = embed(t[None], None if cond is None else cond[None])[0]
            flat = x.reshape(-1)
        else:
            emb = embed(t, cond)
            flat = x.reshape(x.shape[:1] + (-1,))
        h = nn.Dense(self.hidden)(flat)
        for _ in range(self.num_blocks):
            r = nn.Dense(self.hidden)(nn.swish(nn.LayerNorm()(h)))
            r = r + nn.Dense(self.hidden)(emb)
            r = nn.Dense(self.hidden)(nn.swish(nn.LayerNorm()(r)))
            h = h + r
        h = nn.swish(nn.LayerNorm()(h))
        out = nn.Dense(flat.shape[-1], kernel_init=_output_init(self.zero_init_output))(h)
        return out.reshape(x.shape)


def _groups(channels: int) -> int:
    for g in (8, 4, 2, 1):
        if channels % g == 0:
            return g
    return 1


class PatchConv(nn.Module):
    """``nn.Conv`` with SAME padding, computed as patches times a matrix.

    Same parameters (``kernel`` ``(kh, kw, C_in, C_out)``, ``bias``) and the same
    output as ``nn.Conv``. It exists because XLA on CPU runs convolution gradients
    inside loops (``lax.scan``: training chunks, annealed MCMC) 5-20x slower than
    outside them (jax-ml/jax#12868); slices and a matrix product do not have that
    problem. ``(B, H, W, C_in) -> (B, ceil(H / s), ceil(W / s), C_out)``.
    """

    features: int
    kernel_size: tuple[int, int] = (3, 3)
    strides: tuple[int, int] = (1, 1)
    kernel_init: Any = nn.linear.default_kernel_init

    @nn.compact
    def __call__(self, x: Array) -> Array:
        (kh, kw), (sh, sw) = self.kernel_size, self.strides
        c_in = x.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (kh, kw, c_in, self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        pads, spans = [(0, 0)], []
        for size, k, s in ((x.shape[1], kh, sh), (x.shape[2], kw, sw)):
            out = -(-size // s)
            span = (out - 1) * s + 1
            low = max(span - 1 + k - size, 0) // 2
            pads.append((low, span - 1 + k - size - low))
            spans.append(span)
        padded = jnp.pad(x, pads + [(0, 0)])
        patches = jnp.concatenate(
            [
                padded[:, i : i + spans[0] : sh, j : j + spans[1] : sw, :]
                for i in range(kh)
                for j in range(kw)
            ],
            axis=-1,
        )
        return patches @ kernel.reshape(kh * kw * c_in, self.features) + bias


def _conv(patch_conv: bool, features: int, kernel_size=(3, 3), **kwargs) -> nn.Module:
    return (PatchConv if patch_conv else nn.Conv)(features, kernel_size, **kwargs)


class ResBlock(nn.Module):
    channels: int
    patch_conv: bool = True

    @nn.compact
    def __call__(self, x: Array, emb: Array) -> Array:
        h = nn.swish(nn.GroupNorm(_groups(x.shape[-1]))(x))
        h = _conv(self.patch_conv, self.channels)(h)
        h = h + nn.Dense(self.channels)(nn.swish(emb))[:, None, None, :]
        h = nn.swish(nn.GroupNorm(_groups(self.channels))(h))
        h = _conv(self.patch_conv, self.channels)(h)
        if x.shape[-1] != self.channels:
            x = _conv(self.patch_conv, self.channels, (1, 1))(x)
        return x + h


class UNet(nn.Module):
    """A small U-Net for channels-last images ``(B, H, W, C)``.

    ``len(channel_mults) - 1`` halvings of the resolution, so ``H`` and ``W`` must be
    divisible by ``2 ** (len(channel_mults) - 1)``; 8x8 through 64x64 work with the
    defaults. ``patch_conv`` computes convolutions as patches times a matrix (see
    :class:`PatchConv`; fast on CPU); ``False`` uses ``nn.Conv``, which may suit large
    images on an accelerator better. Both have parameters of the same shapes.
    """

    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2)
    num_res_blocks: int = 1
    time_embed_dim: int = 64
    num_classes: int | None = None
    zero_init_output: bool = True
    patch_conv: bool = True

    @nn.compact
    def __call__(self, x: Array, t: Array, cond: Array | None = None) -> Array:
        if x.ndim != 4:
            raise ValueError(f"UNet takes images of shape (B, H, W, C), got {x.shape}.")
        factor = 2 ** (len(self.channel_mults) - 1)
        if x.shape[1] % factor or x.shape[2] % factor:
            raise ValueError(
                f"UNet with channel_mults={self.channel_mults} halves the resolution "
                f"{len(self.channel_mults) - 1} times, so H and W must be divisible by "
                f"{factor}; got {x.shape[1]}x{x.shape[2]}."
            )
        emb = TimeClassEmbedding(self.time_embed_dim, self.num_classes)(t, cond)
        conv = functools.partial(_conv, self.patch_conv)
        h = conv(self.base_channels)(x)
        skips = []
        for i, mult in enumerate(self.channel_mults):
            for _ in range(self.num_res_blocks):
                h = ResBlock(self.base_channels * mult, self.patch_conv)(h, emb)
            skips.append(h)
            if i < len(self.channel_mults) - 1:
                h = conv(h.shape[-1], strides=(2, 2))(h)
        h = ResBlock(h.shape[-1], self.patch_conv)(h, emb)
        for i, mult in reversed(list(enumerate(self.channel_mults))):
            h = jnp.concatenate([h, skips[i]], axis=-1)
            for _ in range(self.num_res_blocks):
                h = ResBlock(self.base_channels * mult, self.patch_conv)(h, emb)
            if i > 0:
                b, hh, ww, c = h.shape
                h = jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)
                h = conv(c)(h)
        h = nn.swish(nn.GroupNorm(_groups(h.shape[-1]))(h))
        return conv(x.shape[-1], kernel_init=_output_init(self.zero_init_output))(h)


class EnergyNetwork(nn.Module):
    """Turns a network with the input's shape into a scalar raw energy per example.

    ``form="dae"``: ``E_raw = ||net(x, t) - x||^2`` (Du et al.'s 2D code);
    ``form="l2"``: ``E_raw = 0.5 ||net(x, t)||^2`` (their image code). Returns ``(B,)``,
    or a scalar for one example (``t`` a scalar) where the base network takes one.
    """

    base: nn.Module
    form: str = "dae"

    @property
    def single_example_calls(self) -> bool:
        return accepts_single_examples(self.base)

    @nn.compact
    def __call__(self, x: Array, t: Array, cond: Array | None = None) -> Array:
        if self.form not in ("dae", "l2"):
            raise ValueError(f"unknown energy form {self.form!r}; expected 'dae' or 'l2'.")
        if self.form == "l2" and getattr(self.base, "zero_init_output", False):
            raise ValueError(
                "form='l2' with a zero-initialised output has zero gradients at the start "
                "of training; build the base network with zero_init_output=False."
            )
        out = self.base(x, t, cond)
        axes = tuple(range(1, x.ndim)) if t.ndim else None
        if self.form == "dae":
            return jnp.sum((out - x) ** 2, axis=axes)
        return 0.5 * jnp.sum(out**2, axis=axes)


def accepts_single_examples(network: nn.Module) -> bool:
    """Whether ``network`` takes one example unbatched (``t`` a scalar). Models call
    such networks so: vmapped over chains, a batch of one per chain compiles to
    programs with a copy around every matrix product, much slower on the CPU."""
    return bool(getattr(network, "single_example_calls", False))


BUILTIN_NETWORKS: dict[str, type[nn.Module]] = {
    "ResidualMLP": ResidualMLP,
    "UNet": UNet,
    "EnergyNetwork": EnergyNetwork,
}


def network_config(network: nn.Module) -> dict[str, Any]:
    """A JSON-friendly description of a built-in network (nested for the energy wrapper)."""
    name = type(network).__name__
    config: dict[str, Any] = {"class": name}
    for field in dataclasses.fields(network):
        if field.name in ("parent", "name"):
            continue
        value = getattr(network, field.name)
        if isinstance(value, nn.Module):
            value = network_config(value)
        elif isinstance(value, tuple):
            value = list(value)
        config[field.name] = value
    return config


def network_from_config(config: dict[str, Any]) -> nn.Module:
    """Rebuild a built-in network from :func:`network_config`'s output."""
    config = dict(config)
    name = config.pop("class", None)
    if name not in BUILTIN_NETWORKS:
        raise ValueError(
            f"network class {name!r} is not built in ({', '.join(BUILTIN_NETWORKS)}); "
            "pass the network object to load(path, network=...)."
        )
    for key, value in config.items():
        if isinstance(value, dict) and "class" in value:
            config[key] = network_from_config(value)
        elif isinstance(value, list):
            config[key] = tuple(value)
    return BUILTIN_NETWORKS[name](**config)


def network_num_classes(network: Any) -> int | None:
    """The number of classes of a (possibly energy-wrapped) built-in network, else None."""
    while network is not None:
        if getattr(network, "num_classes", None) is not None:
            return int(network.num_classes)
        network = getattr(network, "base", None)
    return None
