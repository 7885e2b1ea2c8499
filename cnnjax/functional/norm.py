"""Batch normalisation as pure functions: moments, then normalise with given statistics."""
from __future__ import annotations

import jax.numpy as jnp

from cnnjax.functional import _checks

__all__ = ["batch_moments", "batch_norm"]


def batch_moments(x, axes):
    """Mean and (biased) variance over ``axes``, in float32 at least, with the two-pass formula
    ``mean((x - mean)**2)`` (no cancellation when activations have a large mean)."""
    x = _checks.floating(x, "x", "batch_moments")
    x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    mean = jnp.mean(x32, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=axes)
    return jnp.squeeze(mean, axis=axes), var


def batch_norm(x, mean, var, scale=None, bias=None, *, epsilon: float = 1e-3, axis: int = -1):
    """``(x - mean) / sqrt(var + epsilon) * scale + bias``, statistics and affine params along ``axis``.

    Keras' default ``epsilon`` is 1e-3. Output has ``x``'s dtype.
    """
    fn = "batch_norm"
    x = _checks.floating(x, "x", fn)
    axis = axis % x.ndim
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]
    for name, value in (("mean", mean), ("var", var), ("scale", scale), ("bias", bias)):
        if value is not None and jnp.shape(value) != (x.shape[axis],):
            raise ValueError(
                f"{fn}: {name} of shape {jnp.shape(value)} must have shape ({x.shape[axis]},), one per channel.")
    mul = jnp.reciprocal(jnp.sqrt(var + epsilon))
    if scale is not None:
        mul = mul * scale
    shift = -mean * mul
    if bias is not None:
        shift = shift + bias
    return x * mul.astype(x.dtype).reshape(shape) + shift.astype(x.dtype).reshape(shape)
