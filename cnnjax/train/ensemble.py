"""Many models in one compiled step (`jax.vmap`), and per-example gradients.

An ensemble state is a `TrainState` whose every leaf has a leading member axis [N, ...]. Member i is exactly the
state ``create_state(model, tx, key=keys[i])`` (built one by one and stacked), and since the dropout key of a
step is ``fold_in(state.rng, step)`` each member draws its own masks (the vmapped-Flax RNG trap of flax#4195
cannot occur: no key is shared across the member axis). All members see the same batches.

Learning-rate ensembles: member i follows the same schedule shape scaled by ``lr_scales[i]``; this is done by
appending ``optax.inject_hyperparams(optax.scale)(step_size)`` to the optimizer and storing each member's factor
in its optimizer state. For SGD, Adam and AdamW the update is linear in the learning rate, so member i trains
exactly as the optimizer with learning rate ``lr * lr_scales[i]`` would.
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import optax

from .state import TrainState, create_state
from cnnjax.functional.images import as_float_images
from cnnjax.functional.losses import softmax_cross_entropy


def with_update_scale(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """`tx` followed by a multiplication of the update by a per-state factor (initially 1)."""
    return optax.chain(tx, optax.inject_hyperparams(optax.scale)(step_size=1.0))


def create_ensemble(model, tx: optax.GradientTransformation, *, input_shape, keys: Sequence,
                    lr_scales: Sequence[float] | None = None) -> TrainState:
    """Stacked states of len(keys) members. With `lr_scales`, `tx` must come from `with_update_scale`."""
    if len(keys) < 1:
        raise ValueError(f"create_ensemble: need at least one key, got {len(keys)}.")
    states = [create_state(model, tx, input_shape=input_shape, key=k) for k in keys]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
    if lr_scales is None:
        return stacked
    if len(lr_scales) != len(keys):
        raise ValueError(f"create_ensemble: lr_scales has {len(lr_scales)} entries for {len(keys)} members.")
    inner, scale_state = stacked.opt_state
    hyper = dict(scale_state.hyperparams, step_size=jnp.asarray(lr_scales, jnp.float32))
    return stacked.replace(opt_state=(inner, scale_state._replace(hyperparams=hyper)))


def vmap_train_step(train_step: Callable) -> Callable:
    """Member-axis version of a train step: state [N, ...], shared batch -> state [N, ...], metrics [N]."""
    return jax.vmap(train_step, in_axes=(0, None, None))


def vmap_eval_step(eval_step: Callable) -> Callable:
    return jax.vmap(eval_step, in_axes=(0, None, None, None))


def member(state: TrainState, i: int) -> TrainState:
    """Member i of an ensemble state (leading axis removed)."""
    return jax.tree.map(lambda x: x[i], state)


def per_example_grads(model, params, images, labels, *, batch_stats=None, label_smoothing: float = 0.0):
    """Gradients of each example's own loss: a params-shaped tree with leading axis N.

    g_i = d/dparams softmax_cross_entropy(model(params, images[i:i+1]), labels[i]), computed as
    ``vmap(grad(loss_of_one_example))`` with the model in inference mode (``train=False``: running BatchNorm
    statistics, no dropout), so g_i does not depend on the other rows. The mean over i equals the gradient of
    the batch-mean loss. images: [N, H, W, C] (uint8 or float), labels: int [N].
    """
    variables_extra = {"batch_stats": batch_stats} if batch_stats else {}

    def one_loss(p, x, y):
        logits = model.apply({"params": p, **variables_extra}, as_float_images(x[None]), train=False)
        return softmax_cross_entropy(logits, y[None], label_smoothing=label_smoothing)[0]

    return jax.vmap(jax.grad(one_loss), in_axes=(None, 0, 0))(params, images, labels)
