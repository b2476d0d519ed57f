"""scikit-learn's bundled handwritten digits (8x8, no download) and a small digit classifier.

Images are channels-last ``(N, 8, 8, 1)`` in ``[-1, 1]``; a fixed, stratified
held-out split keeps evaluation honest. The classifier's penultimate layer gives the
features of the Frechet distance used by the guidance benchmark.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array

from numpyro_diffusion import DiffusionModel, EnergyNetwork, UNet, VPSchedule, load, train
from numpyro_diffusion.checkpoint import read_archive, write_archive

__all__ = [
    "DigitsData",
    "load_digits_data",
    "DigitClassifier",
    "train_classifier",
    "save_classifier",
    "load_classifier",
    "DIGIT_SCHEDULE",
    "digit_network",
    "train_digit_model",
    "DigitModels",
    "load_digit_models",
    "load_digit_judge",
]

CLASSIFIER_FORMAT = "numpyro_diffusion.digit_classifier"


class DigitsData(NamedTuple):
    images: np.ndarray  # [N, 8, 8, 1] in [-1, 1]
    labels: np.ndarray  # [N] integers 0..9


def load_digits_data(split: str = "train", held_out_fraction: float = 0.2) -> DigitsData:
    """The 1,797 digits, split by a fixed stratified permutation into train / held-out."""
    if split not in ("train", "held_out", "all"):
        raise ValueError(f"unknown split {split!r}; expected 'train', 'held_out' or 'all'.")
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - dev and notebooks extras install it
        raise ImportError(
            "the digits data come from scikit-learn: pip install 'numpyro_diffusion[dev]'"
        ) from exc
    raw = load_digits()
    images = (raw.images.astype(np.float32) / 8.0 - 1.0)[..., None]
    labels = raw.target.astype(np.int32)
    if split == "all":
        return DigitsData(images, labels)
    rng = np.random.default_rng(0)
    held = np.zeros(len(labels), bool)
    for digit in range(10):
        idx = np.flatnonzero(labels == digit)
        held[rng.choice(idx, int(round(held_out_fraction * len(idx))), replace=False)] = True
    keep = held if split == "held_out" else ~held
    return DigitsData(images[keep], labels[keep])


class DigitClassifier(nn.Module):
    """An MLP on flattened 8x8 images: ``(B, 8, 8, 1) -> (B, 10)`` logits.

    ``features=True`` returns the ``(B, feature_dim)`` penultimate activations.
    """

    hidden: int = 128
    feature_dim: int = 64

    @nn.compact
    def __call__(self, x: Array, features: bool = False) -> Array:
        h = x.reshape((x.shape[0], -1))
        h = nn.gelu(nn.Dense(self.hidden)(h))
        h = nn.gelu(nn.Dense(self.feature_dim)(h))
        if features:
            return h
        return nn.Dense(10)(h)


def train_classifier(
    data: DigitsData,
    rng_key: Array,
    num_steps: int = 3000,
    batch_size: int = 128,
    noise_std: float = 0.1,
) -> tuple[DigitClassifier, dict]:
    """Train :class:`DigitClassifier` with a little input noise (robust to samplers' noise)."""
    net = DigitClassifier()
    init_key, loop_key = jax.random.split(rng_key)
    params = net.init(init_key, jnp.zeros((1, 8, 8, 1)))
    images, labels = jnp.asarray(data.images), jnp.asarray(data.labels)
    optimizer = optax.adam(1e-3)
    opt_state = optimizer.init(params)

    def loss_fn(params, key):
        k_idx, k_noise = jax.random.split(key)
        idx = jax.random.randint(k_idx, (batch_size,), 0, images.shape[0])
        x = images[idx] + noise_std * jax.random.normal(k_noise, images[idx].shape)
        logits = net.apply(params, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels[idx]).mean()

    @jax.jit
    def run(params, opt_state):
        def step(carry, i):
            params, opt_state = carry
            loss, grads = jax.value_and_grad(loss_fn)(params, jax.random.fold_in(loop_key, i))
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        return jax.lax.scan(step, (params, opt_state), jnp.arange(num_steps))

    (params, _), _ = run(params, opt_state)
    return net, params


def save_classifier(path: str | os.PathLike, network: DigitClassifier, params: dict) -> None:
    """Write a classifier (its sizes and parameters) as a checkpoint archive."""
    write_archive(
        path,
        CLASSIFIER_FORMAT,
        {"hidden": network.hidden, "feature_dim": network.feature_dim},
        params,
    )


def load_classifier(path: str | os.PathLike) -> tuple[DigitClassifier, dict]:
    """Read :func:`save_classifier`'s file: the network and its parameters."""
    meta, params = read_archive(path, CLASSIFIER_FORMAT)
    return DigitClassifier(meta["hidden"], meta["feature_dim"]), params


DIGIT_SCHEDULE = dict(num_steps=200)
CHECKPOINTS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "checkpoints")


def digit_network(parameterization: str, base_channels: int = 32) -> nn.Module:
    """The class-conditional U-Net of the shipped digit models (10 classes + null)."""
    unet = UNet(
        base_channels=base_channels, channel_mults=(1, 2), time_embed_dim=64, num_classes=10
    )
    if parameterization == "energy":
        return EnergyNetwork(unet, form="dae")
    return unet


def train_digit_model(
    data: DigitsData,
    parameterization: str,
    rng_key: Array,
    num_steps: int = 6000,
    batch_size: int = 128,
    base_channels: int = 32,
    progress_bar: bool = True,
) -> DiffusionModel:
    """Class-conditional training with classifier-free dropout ``p_uncond = 0.1``."""
    learning_rate = optax.warmup_cosine_decay_schedule(
        0.0, 2e-3, min(200, num_steps // 10), num_steps, 1e-5
    )
    return train(
        digit_network(parameterization, base_channels),
        data.images,
        labels=data.labels,
        p_uncond=0.1,
        schedule=VPSchedule.cosine(**DIGIT_SCHEDULE),
        parameterization=parameterization,
        num_steps=num_steps,
        batch_size=batch_size,
        optimizer=optax.adam(learning_rate),
        rng_key=rng_key,
        ema_decay=0.999,
        progress_bar=progress_bar,
    )


def load_digit_judge(directory: str | os.PathLike = CHECKPOINTS) -> tuple[DigitClassifier, dict]:
    """An independent classifier (another seed, never used by a constraint) that judges
    the class of generated digits; shipped as ``digit_judge.npz``."""
    return load_classifier(os.path.join(directory, "digit_judge.npz"))


class DigitModels(NamedTuple):
    eps: DiffusionModel
    energy: DiffusionModel
    classifier: DigitClassifier
    classifier_params: dict


def load_digit_models(directory: str | os.PathLike = CHECKPOINTS) -> DigitModels:
    """The shipped digit models (regenerate them with scripts/train_digit_models.py)."""
    classifier, classifier_params = load_classifier(os.path.join(directory, "digit_classifier.npz"))
    return DigitModels(
        load(os.path.join(directory, "digits_eps.npz")),
        load(os.path.join(directory, "digits_energy.npz")),
        classifier,
        classifier_params,
    )
