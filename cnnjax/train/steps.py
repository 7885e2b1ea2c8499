"""Pure train / eval steps and the `lax.scan` chunk runner built from them.

All builders return pure functions of arrays; `jax.jit`, `jax.pmap` or `jax.vmap` is applied by the caller
(`trainer.py`, `parallel.py`, `ensemble.py`), so one step definition serves every mode.

Loss: mean over the batch of softmax cross-entropy in float32,
    loss = mean_i( -sum_c q_ic * log_softmax(logits_i)_c ),  q_i = (1 - eps) * onehot(y_i) + eps / C,
with eps = `label_smoothing` (eps = 0 gives the usual -log p_{y_i}). Logits are cast to float32 before the loss
whatever the compute dtype, so bfloat16 compute keeps a float32 loss and float32 gradients of float32 params.
float16 compute also gets a static loss scale (:func:`loss_scale_for`): its exponent range is too narrow for
the batch mean's small backward signals.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp
import optax
from jax import lax

from cnnjax.functional.images import as_float_images
from cnnjax.functional.losses import softmax_cross_entropy

from .cpu_speed.swap import with_cpu_forms
from .state import TrainState
from .tta import TTA_MODES, tta_logits


AUGMENT_STREAM = 0x61756720   # folded into a step's dropout key for its augmentation key ("aug ")


def _variables(state_params, batch_stats):
    return {"params": state_params, "batch_stats": batch_stats} if batch_stats else {"params": state_params}


def loss_scale_for(dtype, batch: int) -> float:
    """The static loss scale of a float16 step: the largest power of two <= ``batch`` (so the backward pass sees
    the summed loss's signals: the batch mean's are ~1/batch of them and fall into float16's subnormals, below
    6e-5); 1 for every other dtype. A power of two, so that scaling and unscaling round nothing."""
    if dtype is None or jnp.dtype(dtype) != jnp.float16:
        return 1.0
    return float(2 ** (max(int(batch), 1).bit_length() - 1))


def scaled_value_and_grad(fn: Callable, scale: float) -> Callable:
    """``jax.value_and_grad(fn, has_aux=True)`` (``fn(params, ...) -> (value, aux)``) with the backward pass run
    on ``value * scale`` and the gradients divided by ``scale`` again; the value returned is unscaled. With
    ``scale == 1`` it is ``jax.value_and_grad`` itself (the same program)."""
    if scale == 1.0:
        return jax.value_and_grad(fn, has_aux=True)

    def scaled(*args):
        value, aux = fn(*args)
        return value * scale, (value, aux)

    def value_and_grad(*args):
        (_, (value, aux)), grads = jax.value_and_grad(scaled, has_aux=True)(*args)
        return (value, aux), jax.tree_util.tree_map(lambda g: g / scale, grads)

    return value_and_grad


def make_train_step(model, tx: optax.GradientTransformation, *, label_smoothing: float = 0.0,
                    dtype=None, axis_name: str | None = None, loss_scale: float | None = None,
                    cpu_forms: bool = False, augment: Callable | None = None) -> Callable:
    """Return ``train_step(state, images[B,H,W,C], labels[B]) -> (state, {"loss", "accuracy"})``.

    The dropout key is ``fold_in(state.rng, state.step)``, further folded with the device index when
    `axis_name` is given (pmap), so every step and device draws fresh masks. With `axis_name`, gradients,
    loss, accuracy and new BatchNorm statistics are averaged over the axis (``lax.pmean``).

    `loss_scale`: the backward pass runs on ``loss * loss_scale`` and the (float32) gradients are divided by it
    again; None (the default) picks :func:`loss_scale_for` ``(dtype, B)``: B rounded down to a power of two for
    float16, 1 otherwise (bfloat16 has float32's exponent range and needs none). Static, so a float16 step
    whose scaled signals overflow gets non-finite gradients.

    `cpu_forms`: differentiate the loss with its convolutions and max/min pools in their XLA:CPU forms
    (:func:`cnnjax.train.cpu_speed.with_cpu_forms`; the same values to float rounding, faster on a CPU).

    `augment`: ``(key, images) -> images`` applied to each batch inside the step, before the images are scaled
    (e.g. :func:`cnnjax.functional.augment.from_spec` ``("flip,translate:2")``), with the key
    ``fold_in(dropout key, AUGMENT_STREAM)``: a fresh draw every step (and device), repeatable from the seed.
    """
    if loss_scale is not None and not (isinstance(loss_scale, (int, float)) and 0 < loss_scale < float("inf")):
        raise ValueError(f"make_train_step: loss_scale={loss_scale!r} must be a finite number > 0, or None "
                         f"for the automatic scale.")

    def train_step(state: TrainState, images, labels):
        key = jax.random.fold_in(state.rng, state.step)
        if axis_name is not None:
            key = jax.random.fold_in(key, lax.axis_index(axis_name))
        if augment is not None:
            images = augment(jax.random.fold_in(key, AUGMENT_STREAM), images)
        x = as_float_images(images, dtype)

        def loss_fn(params):
            variables = _variables(params, state.batch_stats)
            if state.batch_stats:
                logits, updates = model.apply(variables, x, train=True, rngs={"dropout": key},
                                              mutable=["batch_stats"])
                new_stats = updates["batch_stats"]
            else:
                logits = model.apply(variables, x, train=True, rngs={"dropout": key})
                new_stats = state.batch_stats
            loss = softmax_cross_entropy(logits, labels, label_smoothing=label_smoothing).mean()
            return loss, (logits, new_stats)

        scale = loss_scale_for(dtype, images.shape[0]) if loss_scale is None else float(loss_scale)
        objective = with_cpu_forms(loss_fn) if cpu_forms else loss_fn
        (loss, (logits, new_stats)), grads = scaled_value_and_grad(objective, scale)(state.params)
        accuracy = jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))
        if axis_name is not None:
            grads, loss, accuracy, new_stats = lax.pmean((grads, loss, accuracy, new_stats), axis_name)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state, batch_stats=new_stats)
        return new_state, {"loss": loss, "accuracy": accuracy}

    return train_step


def make_train_chunk(train_step: Callable, *, unroll: bool = False) -> Callable:
    """``chunk(state, images[K,B,...], labels[K,B]) -> (state, metrics[K])``: K steps in one `lax.scan`;
    ``unroll=True`` unrolls it fully (K copies of the step in one program, no while loop)."""
    def chunk(state, images, labels):
        return lax.scan(lambda s, batch: train_step(s, *batch), state, (images, labels), unroll=unroll)
    return chunk


def gather_batch(images, labels, rows):
    """``(images[rows], labels[rows])`` for arrays kept on the device: ``rows`` (int ``[B]`` or ``[K, B]``) selects
    the batch (or K batches) inside the compiled program, so only the row indices travel from the host."""
    return jnp.take(images, rows, axis=0), jnp.take(labels, rows, axis=0)


def with_gather(train_fn: Callable) -> Callable:
    """``train_fn(state, images_batch, labels_batch)`` (a step or a chunk) as
    ``fn(state, images_all, labels_all, rows)``, the batch gathered on the device by :func:`gather_batch`."""
    def fn(state, images, labels, rows):
        return train_fn(state, *gather_batch(images, labels, rows))
    return fn


def make_eval_step(model, *, label_smoothing: float = 0.0, dtype=None, axis_name: str | None = None,
                   cpu_forms: bool = False, tta: str | None = None) -> Callable:
    """``eval_step(state, images[B,...], labels[B], weights[B]) -> {"loss_sum", "correct", "count"}``.

    Sums are weighted by `weights` (1 for real rows, 0 for padding), so a padded last batch counts exactly;
    summed over `axis_name` when given. Runs the model with ``train=False`` (no dropout, running BN stats);
    `cpu_forms` as in :func:`make_train_step`. `tta` (test-time augmentation, :mod:`cnnjax.train.tta`): ``"flip"``
    averages the model's logits on each image and on its mirror image (width axis reversed);
    ``"flip_translate"`` and ``"translate"`` add one-pixel translations (:func:`cnnjax.train.tta.tta_logits`).
    """
    if tta not in TTA_MODES:
        raise ValueError(f"make_eval_step: tta={tta!r}; valid: None or {', '.join(repr(m) for m in TTA_MODES[1:])}.")
    apply = partial(model.apply, train=False)
    if cpu_forms:
        apply = with_cpu_forms(apply)

    def logits_of(variables, x):
        return tta_logits(partial(apply, variables), x, tta)

    def eval_step(state: TrainState, images, labels, weights):
        logits = logits_of(_variables(state.params, state.batch_stats), as_float_images(images, dtype))
        losses = softmax_cross_entropy(logits, labels, label_smoothing=label_smoothing)
        correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
        out = {"loss_sum": jnp.sum(losses * weights), "correct": jnp.sum(correct * weights),
               "count": jnp.sum(weights)}
        return lax.psum(out, axis_name) if axis_name is not None else out

    return eval_step
