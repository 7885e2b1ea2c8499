"""Batch normalisation as pure functions: moments, then normalise with given statistics."""
from __future__ import annotations

import jax.numpy as jnp

from cnnjax import _args
from cnnjax.functional import checks

__all__ = ["batch_moments", "batch_norm"]


def batch_moments(x, axes):
    """Mean and (biased) variance over ``axes``, in float32 at least, with the two-pass formula
    ``mean((x - mean)**2)`` (no cancellation when activations have a large mean).

    ``axes``: an int or a sequence of distinct ints in ``[-x.ndim, x.ndim)``, or None for all axes. ValueError
    when an axis reduced over has size 0 (an empty batch has no statistics).
    """
    fn = "batch_moments"
    x = checks.floating(x, "x", fn)
    if axes is not None:
        axes = checks.axes(axes, x.ndim, "axes", fn)
    reduced = range(x.ndim) if axes is None else (axes,) if isinstance(axes, int) else axes
    if any(_args.surely(lambda a=a: x.shape[a] == 0) for a in reduced):
        raise ValueError(
            f"{fn}: x of shape {tuple(x.shape)} has no elements along axes {tuple(reduced)}; the mean and variance "
            f"of an empty batch are undefined (they would be NaN). Normalise an empty batch with given statistics "
            f"(batch_norm, or BatchNormalization with train=False).")
    x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    mean = jnp.mean(x32, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=axes)
    return jnp.squeeze(mean, axis=axes), var


def batch_norm(x, mean, var, scale=None, bias=None, *, epsilon: float = 1e-3, axis: int = -1):
    """``(x - mean) / sqrt(var + epsilon) * scale + bias``, statistics and affine params along ``axis``.

    Keras' default ``epsilon`` is 1e-3. Output has ``x``'s dtype; the arithmetic is done in float32 at least
    (inside one fused elementwise pass, so a bfloat16 ``x`` costs no extra memory traffic), as
    ``x * m + (bias - mean * m)``: in bfloat16 that folded form would lose everything when ``|mean| * m`` is
    large (a channel with a tiny variance), its 8-bit mantissa leaving an error of ``|mean| * m / 256``.

    ``axis`` must lie in ``[-x.ndim, x.ndim)``; a Python/NumPy ``epsilon`` must be finite and >= 0 (a jax array
    is used as it is: its value is not read).
    """
    fn = "batch_norm"
    x = checks.floating(x, "x", fn)
    axis = checks.axes(axis, x.ndim, "axis", fn)
    checks.epsilon(epsilon, fn)
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]
    for name, value in (("mean", mean), ("var", var), ("scale", scale), ("bias", bias)):
        if value is not None and jnp.shape(value) != (x.shape[axis],):
            raise ValueError(
                f"{fn}: {name} of shape {jnp.shape(value)} must have shape ({x.shape[axis]},), one per channel.")
    compute = jnp.promote_types(x.dtype, jnp.float32)
    mul = jnp.reciprocal(jnp.sqrt(jnp.asarray(var, compute) + epsilon))
    if scale is not None:
        mul = mul * scale
    shift = -jnp.asarray(mean, compute) * mul
    if bias is not None:
        shift = shift + bias
    # the folded form (measured faster on XLA:CPU than (x - mean) * mul), in float32 at least
    return (x.astype(compute) * mul.reshape(shape) + shift.reshape(shape)).astype(x.dtype)
