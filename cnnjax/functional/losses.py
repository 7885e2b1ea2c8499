"""Losses and metrics for classification."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from cnnjax.functional import checks

__all__ = ["softmax_cross_entropy", "accuracy"]


def _check_labels(logits, labels, fn):
    # Label values are checked where they are host data (NumPy, lists): reading a jax array's values would wait
    # for the device, and under jit they are unknown (an index out of range then gives a NaN loss, and -1 the
    # last class).
    host = None if isinstance(labels, jax.Array) else np.asarray(labels)
    labels = jnp.asarray(labels)
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"{fn}: labels have dtype {labels.dtype}; give integer class indices (e.g. int32).")
    if labels.shape != logits.shape[:-1]:
        raise ValueError(
            f"{fn}: labels of shape {tuple(labels.shape)} must have the shape of logits without the class axis, "
            f"{tuple(logits.shape[:-1])}.")
    if host is not None and host.size:
        low, high, classes = int(host.min()), int(host.max()), logits.shape[-1]
        if low < 0 or high >= classes:
            raise ValueError(f"{fn}: labels must be class indices in [0, {classes}) for logits with {classes} "
                             f"classes; got labels from {low} to {high}.")
    return labels


def softmax_cross_entropy(logits, labels, *, label_smoothing: float = 0.0):
    """Per-example ``-log softmax(logits)[label]`` for integer labels (Keras' sparse categorical cross-entropy).

    ``logits (..., classes)``, ``labels (...)`` int → losses ``(...)``, in float32 at least (a bfloat16 model's
    loss is computed in float32). ``label_smoothing=a`` mixes the one-hot target with ``a / classes``.
    Labels outside ``[0, classes)`` raise ValueError where they are NumPy arrays or lists; jax arrays are not
    read (that would wait for the device, and under ``jit`` their values are unknown). ``label_smoothing`` may be
    traced (under ``jit``, ``vmap`` or ``grad``); its range is then not checked.
    """
    fn = "softmax_cross_entropy"
    logits = checks.floating(logits, "logits", fn)
    labels = _check_labels(logits, labels, fn)
    if isinstance(label_smoothing, jax.Array) and not isinstance(label_smoothing, jax.core.Tracer):
        if label_smoothing.ndim:
            raise ValueError(f"{fn}: label_smoothing must be one number, got an array of shape "
                             f"{tuple(label_smoothing.shape)}.")
        smoothing = float(label_smoothing)          # a concrete jax scalar: checked like a Python number
    else:
        smoothing = checks.static_number(label_smoothing, "label_smoothing", fn)   # None for a traced value
    if smoothing is not None and not 0.0 <= smoothing < 1.0:
        raise ValueError(f"{fn}: label_smoothing={label_smoothing!r} must be in [0, 1).")
    logp = jax.nn.log_softmax(logits.astype(jnp.promote_types(logits.dtype, jnp.float32)), axis=-1)
    picked = jnp.take_along_axis(logp, labels[..., None], axis=-1)[..., 0]
    if smoothing == 0.0:
        return -picked
    return -(1.0 - label_smoothing) * picked - label_smoothing * jnp.mean(logp, axis=-1)


def accuracy(logits, labels):
    """Fraction of examples whose arg-max logit is the label."""
    logits = jnp.asarray(logits)
    labels = _check_labels(logits, labels, "accuracy")
    return jnp.mean(jnp.argmax(logits, axis=-1) == labels)
