"""Denoising (eps-matching) training of any parameterization."""

from __future__ import annotations

import os
import sys
from typing import Any

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array
from jax.typing import ArrayLike

from numpyro_diffusion.errors import CheckpointError
from numpyro_diffusion.models import DiffusionModel
from numpyro_diffusion.networks import network_num_classes
from numpyro_diffusion.parameterization import check_parameterization, eps_from_prediction
from numpyro_diffusion.schedules import VPSchedule

__all__ = ["train"]


def _predicted_eps(network, params, parameterization, schedule, x_t, t, cond):
    if parameterization == "energy":
        return jax.grad(lambda x: jnp.sum(network.apply(params, x, t, cond)))(x_t)
    prediction = network.apply(params, x_t, t, cond)
    abar = schedule.alpha_bars[t].reshape((-1,) + (1,) * (x_t.ndim - 1))
    return eps_from_prediction(prediction, x_t, abar, parameterization)


def train(
    network: Any,
    data: ArrayLike,
    *,
    schedule: VPSchedule,
    parameterization: str,
    num_steps: int,
    batch_size: int,
    optimizer: optax.GradientTransformation,
    rng_key: Array,
    labels: ArrayLike | None = None,
    p_uncond: float = 0.0,
    ema_decay: float | None = None,
    progress_bar: bool = True,
    steps_per_call: int = 100,
    resume_path: str | None = None,
    save_every: int = 500,
) -> DiffusionModel | list[DiffusionModel]:
    """Train ``network`` on ``data`` by eps matching and return a :class:`DiffusionModel`.

    Each step draws a batch, a level ``t ~ U{0..T-1}`` and noise ``eps`` per example,
    and minimises ``mean ||eps - eps_theta(x_t, t)||^2`` where ``eps_theta`` is the
    parameterization's noise estimate (for ``"energy"``, the gradient of the raw
    energy: double backpropagation).

    Several independent models (seeds, or one network on several datasets) train in
    one compiled program when ``rng_key`` is a batch of ``M`` keys ``(M, 2)``: then
    ``data`` is ``(M, N, *event_shape)`` and ``labels`` ``(M, N)``, one dataset per
    model, and a list of ``M`` models comes back. Small networks leave most of a
    device idle, so ``M`` models cost far less than ``M`` times one.

    Parameters
    ----------
    data
        Shape ``(N, *event_shape)`` (``(M, N, *event_shape)`` for ``M`` keys).
    labels
        Integer classes, shape ``(N,)`` (``(M, N)``), for a class-conditional network.
    p_uncond
        Probability of replacing a label by the null class (classifier-free guidance).
    ema_decay
        If given, the returned model carries the exponential moving average of the
        parameters with this decay.
    steps_per_call
        Optimisation steps fused into one compiled call (progress updates between).
    resume_path
        A file for the training state (parameters, optimizer state, EMA, losses, the step
        reached), written atomically every ``save_every`` steps and at the end. If it
        exists, training resumes from it: an interrupted run continued with the same
        arguments gives the same model as an uninterrupted one (the step's random
        numbers depend on its index). A longer ``num_steps`` continues a finished run.

    Returns
    -------
    A :class:`DiffusionModel` (a list of ``M`` for ``M`` keys); its ``training_losses``
    attribute holds the loss of every step, shape ``(num_steps,)``. The same
    ``rng_key`` gives the same model.
    """
    check_parameterization(parameterization)
    keys = jnp.asarray(rng_key)
    if keys.ndim not in (1, 2) or keys.shape[-1] != 2:
        raise ValueError(
            f"rng_key must be one key (2,) or a batch of keys (M, 2), got shape {keys.shape}."
        )
    many = keys.ndim == 2
    data = jnp.asarray(data, dtype=jnp.float32)
    if not many:
        keys, data = keys[None], data[None]
        labels = None if labels is None else jnp.asarray(labels)[None]
    M = keys.shape[0]
    if data.ndim < 3 or data.shape[0] != M:
        expected = f"({M}, N, *event_shape), one dataset per key" if many else "(N, *event_shape)"
        given = data.shape if many else data.shape[1:]
        raise ValueError(f"data must have shape {expected}, got {given}.")
    if num_steps < 1 or batch_size < 1:
        raise ValueError("num_steps and batch_size must be positive.")
    if not 0.0 <= p_uncond < 1.0:
        raise ValueError(f"p_uncond must lie in [0, 1), got {p_uncond}.")
    if ema_decay is not None and not 0.0 < ema_decay < 1.0:
        raise ValueError(f"ema_decay must lie in (0, 1), got {ema_decay}.")
    num_classes = network_num_classes(network)
    if labels is not None:
        if num_classes is None:
            raise ValueError(
                "labels were given but the network has no classes; build it with num_classes=K."
            )
        labels = jnp.asarray(labels, dtype=jnp.int32)
        if labels.shape != data.shape[:2]:
            expected = data.shape[:2] if many else data.shape[1:2]
            given = labels.shape if many else labels.shape[1:]
            raise ValueError(f"labels must have shape {expected}, got {given}.")
        if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
            raise ValueError(f"labels must lie in 0 .. {num_classes - 1}.")
    elif p_uncond > 0:
        raise ValueError("p_uncond > 0 drops labels, so it needs labels=...")

    n, event_shape = data.shape[1], data.shape[2:]
    if batch_size > n:
        raise ValueError(
            f"batch_size ({batch_size}) exceeds the {n} examples in data; give batch_size <= {n}."
        )
    T = schedule.num_steps

    # each model's keys: one to initialise, one for its steps' random numbers
    init_keys, loop_keys = jnp.moveaxis(jax.vmap(jax.random.split)(keys), 1, 0)

    def init_carry(init_key, data, labels):
        init_cond = None if labels is None else labels[:1]
        params = network.init(init_key, data[:1], jnp.zeros((1,), jnp.int32), init_cond)
        return params, optimizer.init(params), params if ema_decay is not None else None

    def loss_fn(params, key, data, labels):
        k_idx, k_t, k_eps, k_drop = jax.random.split(key, 4)
        idx = jax.random.randint(k_idx, (batch_size,), 0, n)
        x0 = data[idx]
        t = jax.random.randint(k_t, (batch_size,), 0, T)
        eps = jax.random.normal(k_eps, x0.shape)
        x_t = schedule.noise(x0, eps, t)
        cond = None
        if labels is not None:
            drop = jax.random.uniform(k_drop, (batch_size,)) < p_uncond
            cond = jnp.where(drop, num_classes, labels[idx])
        eps_hat = _predicted_eps(network, params, parameterization, schedule, x_t, t, cond)
        return jnp.mean((eps - eps_hat) ** 2)

    def one_step(carry, i, loop_key, data, labels):
        params, opt_state, ema = carry
        loss, grads = jax.value_and_grad(loss_fn)(
            params, jax.random.fold_in(loop_key, i), data, labels
        )
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        if ema is not None:
            ema = optax.incremental_update(params, ema, 1.0 - ema_decay)
        return (params, opt_state, ema), loss

    if many:
        labels_axis = None if labels is None else 0
        init_all = jax.vmap(init_carry, (0, 0, labels_axis))
        step_all = jax.vmap(one_step, (0, None, 0, 0, labels_axis))
        carry = init_all(init_keys, data, labels)
    else:  # one model: the program and the saved state as they always were
        carry = init_carry(init_keys[0], data[0], None if labels is None else labels[0])

        def step_all(carry, i, keys, data, labels):
            one = None if labels is None else labels[0]
            carry, loss = one_step(carry, i, keys[0], data[0], one)
            return carry, loss[None]

    # the data is an argument, not a constant folded into the compiled program
    @jax.jit
    def run_chunk(carry, steps, data, labels):
        return jax.lax.scan(lambda c, i: step_all(c, i, loop_keys, data, labels), carry, steps)

    losses = []
    first = 0
    if resume_path is not None and os.path.exists(resume_path):
        carry, done_losses, first = load_training_state(resume_path, carry)
        done_losses = done_losses.reshape(done_losses.shape[0], M)
        losses.append(done_losses[:num_steps])
        first = min(first, num_steps)
    bar = None
    if progress_bar:
        from tqdm.auto import tqdm

        what = f"training {M} models" if many else "training"
        bar = tqdm(total=num_steps, initial=first, desc=what, file=sys.stderr)
    chunk = max(1, min(steps_per_call, num_steps))
    saved = first
    for start in range(first, num_steps, chunk):
        steps = jnp.arange(start, min(start + chunk, num_steps))
        carry, chunk_losses = run_chunk(carry, steps, data, labels)
        kept = int(steps.shape[0])
        losses.append(np.asarray(chunk_losses))
        done = start + kept
        if resume_path is not None and (done - saved >= save_every or done == num_steps):
            saved_losses = np.concatenate(losses)
            save_training_state(
                resume_path, carry, saved_losses if many else saved_losses[:, 0], done
            )
            saved = done
        if bar is not None:
            bar.update(kept)
            bar.set_postfix(loss=f"{float(losses[-1].mean()):.4f}")
    if bar is not None:
        bar.close()
    params, _, ema = carry
    kept_params = ema if ema is not None else params
    all_losses = np.concatenate(losses)  # (num_steps, M)
    if not many:
        model = DiffusionModel(network, kept_params, schedule, parameterization, event_shape)
        model.training_losses = all_losses[:, 0]
        return model
    models = []
    for m in range(M):
        model = DiffusionModel(
            network,
            jax.tree.map(lambda a, m=m: a[m], kept_params),
            schedule,
            parameterization,
            event_shape,
        )
        model.training_losses = all_losses[:, m]
        models.append(model)
    return models


def save_training_state(path: str, carry: Any, losses: np.ndarray, step: int) -> None:
    """Write the training state ``(params, opt_state, ema)``, the losses so far and the
    step reached to ``path``, atomically (a killed run leaves the previous file)."""
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        np.savez(
            f,
            state=np.frombuffer(flax.serialization.to_bytes(carry), np.uint8),
            losses=np.asarray(losses, np.float32),
            step=np.asarray(step),
        )
    os.replace(tmp, path)


def load_training_state(path: str, like: Any) -> tuple[Any, np.ndarray, int]:
    """The state written by :func:`save_training_state`, restored into the structure of
    ``like`` (a freshly initialised state of the same network and optimizer)."""
    try:
        with np.load(path) as f:
            blob, losses, step = f["state"].tobytes(), f["losses"], int(f["step"])
        carry = flax.serialization.from_bytes(like, blob)
    except Exception as error:  # noqa: BLE001 - any unreadable file means the same to a user
        raise CheckpointError(
            f"cannot resume training from {path!r} ({type(error).__name__}: {error}); it is "
            "not a training state of this network and optimizer. Delete it to start afresh."
        ) from error
    return carry, losses, step
