"""Pooling as pure functions on ``jax.lax.reduce_window``.

Keras conventions: ``strides=None`` means ``strides = pool_size``; ``padding="same"`` pads as TensorFlow does.
Padded cells never win a max or a min, and ``avg_pool`` averages over the real cells only unless
``count_include_pad=True`` (PyTorch's default). ``ceil_mode=True`` keeps PyTorch's last partial window.
Output size per spatial axis: ``(n + lo + hi - pool_size) // strides + 1`` (rounded up with ``ceil_mode``).
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from cnnjax import _args, shapes
from cnnjax.functional import checks

__all__ = ["max_pool", "avg_pool", "min_pool", "global_avg_pool", "global_max_pool", "channel_max_pool"]


def _window(x, pool_size, strides, padding, data_format, ceil_mode, fn):
    x = jnp.asarray(x)
    if x.ndim not in (3, 4, 5):
        raise ValueError(
            f"{fn}: x of shape {tuple(x.shape)} has rank {x.ndim}; pooling needs rank 3, 4 or 5 "
            f"(batch, 1-3 spatial axes, channels).")
    _, window, strides, pairs, extra, fmt = shapes.pool_geometry(
        x.shape, pool_size, strides, padding, data_format, ceil_mode, fn=fn)
    full = lambda spatial, fill: ((fill,) + tuple(spatial) + (fill,) if fmt == "channels_last"
                                  else (fill, fill) + tuple(spatial))
    dims = full(window, 1)
    steps = full(strides, 1)
    pads = full([(lo, hi + e) for (lo, hi), e in zip(pairs, extra)], (0, 0))
    if _args.has_symbolic(pads):
        # Symbolic pads (jax.export symbolic sizes): lax takes them only as its own "SAME", which is "same"'s rule
        # when ceil_mode adds no cells
        if _args.has_symbolic(extra) or any(extra):
            raise ValueError(
                f"{fn}: ceil_mode=True on the symbolic input shape {tuple(x.shape)} adds padding that depends on the "
                f"sizes' values, which lax.reduce_window cannot take; use ceil_mode=False or concrete spatial sizes.")
        pads = "SAME"
    return x, dims, steps, pads, pairs, extra, fmt


def _extreme(x, pool_size, strides, padding, data_format, ceil_mode, fn, largest):
    x, dims, steps, pads, *_ = _window(x, pool_size, strides, padding, data_format, ceil_mode, fn)
    if jnp.issubdtype(x.dtype, jnp.floating):
        init = -jnp.inf if largest else jnp.inf
    elif jnp.issubdtype(x.dtype, jnp.integer):
        info = jnp.iinfo(x.dtype)
        init = info.min if largest else info.max
    else:
        raise TypeError(f"{fn}: x has dtype {x.dtype}; pooling needs a floating or integer array.")
    return lax.reduce_window(x, np.array(init, x.dtype), lax.max if largest else lax.min, dims, steps, pads)


def max_pool(x, pool_size=2, strides=None, padding="valid", data_format="channels_last", ceil_mode=False):
    """Max pooling. ``strides=None`` means ``strides = pool_size`` (Keras); padded cells never win.

    >>> import jax.numpy as jnp
    >>> x = jnp.array([[1., 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]]).reshape(1, 4, 4, 1)
    >>> max_pool(x, 2)[0, :, :, 0].tolist()
    [[6.0, 8.0], [3.0, 4.0]]
    """
    return _extreme(x, pool_size, strides, padding, data_format, ceil_mode, "max_pool", largest=True)


def min_pool(x, pool_size=2, strides=None, padding="valid", data_format="channels_last", ceil_mode=False):
    """Min pooling: as :func:`max_pool` with the minimum; padded cells never win."""
    return _extreme(x, pool_size, strides, padding, data_format, ceil_mode, "min_pool", largest=False)


def avg_pool(x, pool_size=2, strides=None, padding="valid", data_format="channels_last", ceil_mode=False,
             count_include_pad=False):
    """Average pooling. float16/bfloat16 windows are summed (and divided) in float32 and the result returned in
    the input's dtype, so a mean that fits the dtype never overflows in its sum; float32/float64 are unchanged.

    ``count_include_pad=False`` (TensorFlow/Keras): each output is the mean of the real input cells in its
    window. ``True`` (PyTorch): the zero padding counts in the divisor, except the cells ``ceil_mode`` adds past
    the padded input, as in PyTorch.
    """
    fn = "avg_pool"
    count_include_pad = shapes.check_flag(count_include_pad, "count_include_pad", fn)
    x, dims, steps, pads, pairs, extra, fmt = _window(x, pool_size, strides, padding, data_format, ceil_mode, fn)
    x = checks.floating(x, "x", fn)
    acc = checks.accumulator(x.dtype)    # float16/bfloat16 windows summed in float32: 4 x 60000 fits
    sums = lax.reduce_window(x.astype(acc), np.array(0, acc), lax.add, dims, steps, pads)
    symbolic = pads == "SAME"             # symbolic "same" pads (see _window): no extra cells
    if (count_include_pad and symbolic) or (not symbolic and all(p == (0, 0) for p in pads)):
        # every window is whole (or counts its padding, and ceil_mode added no cells): one divisor
        return (sums * np.array(1.0 / np.prod(dims), acc)).astype(x.dtype)
    spatial = [x.shape[a] for a in _args.spatial_axes(fmt, x.ndim)]
    ones = jnp.ones(spatial, acc)
    if symbolic:
        count_pads = "SAME"
    elif count_include_pad:
        ones = jnp.pad(ones, pairs, constant_values=1)
        count_pads = [(0, e) for e in extra]
    else:
        count_pads = [(lo, hi + e) for (lo, hi), e in zip(pairs, extra)]
    spatial_dims = [d for a, d in enumerate(dims) if a in _args.spatial_axes(fmt, x.ndim)]
    spatial_steps = [s for a, s in enumerate(steps) if a in _args.spatial_axes(fmt, x.ndim)]
    counts = lax.reduce_window(ones, np.array(0, acc), lax.add, spatial_dims, spatial_steps, count_pads)
    counts = counts.reshape(sums.shape[1:-1] + (1,) if fmt == "channels_last" else (1,) + sums.shape[2:])
    return (sums / counts[None]).astype(x.dtype)


def _global(x, data_format, keepdims, fn, reducer):
    x = jnp.asarray(x)
    if x.ndim < 3:
        raise ValueError(
            f"{fn}: x of shape {tuple(x.shape)} has rank {x.ndim}; needs rank >= 3 (batch, spatial..., channels).")
    fmt = _args.data_format(data_format, x.ndim - 2, fn)
    keepdims = shapes.check_flag(keepdims, "keepdims", fn)
    return reducer(x, axis=_args.spatial_axes(fmt, x.ndim), keepdims=keepdims)


def global_avg_pool(x, data_format="channels_last", keepdims=False):
    """Mean over all spatial axes: ``(N, *spatial, C) -> (N, C)`` (one value per channel; depth kept).

    float16/bfloat16 inputs are summed in float32 and the mean returned in the input's dtype."""
    x = checks.floating(x, "x", "global_avg_pool")
    mean = lambda a, axis, keepdims: jnp.mean(a, axis=axis, keepdims=keepdims,  # noqa: E731
                                              dtype=checks.accumulator(a.dtype)).astype(a.dtype)
    return _global(x, data_format, keepdims, "global_avg_pool", mean)


def global_max_pool(x, data_format="channels_last", keepdims=False):
    """Max over all spatial axes: ``(N, *spatial, C) -> (N, C)``."""
    return _global(x, data_format, keepdims, "global_max_pool", jnp.max)


def channel_max_pool(x, pool_size, strides=None, data_format="channels_last"):
    """Depth-wise max pooling: the max of each group of ``pool_size`` adjacent channels.

    What TensorFlow does with ``tf.nn.max_pool(x, ksize=(1, 1, 1, k), strides=(1, 1, 1, k), "VALID")`` and Keras
    has no layer for. ``C2 = (C - pool_size) // strides + 1``; ``strides=None`` means ``pool_size`` (then ``C``
    must be divisible by ``pool_size``). Spatial axes are kept.
    """
    fn = "channel_max_pool"
    x = jnp.asarray(x)
    _, k, s, fmt = shapes.channel_pool_geometry(x.shape, pool_size, strides, data_format, fn=fn)
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)):
        raise TypeError(f"{fn}: x has dtype {x.dtype}; pooling needs a floating or integer array.")
    axis = _args.channel_axis(fmt, x.ndim)
    dims = tuple(k if a == axis else 1 for a in range(x.ndim))
    steps = tuple(s if a == axis else 1 for a in range(x.ndim))
    init = -jnp.inf if jnp.issubdtype(x.dtype, jnp.floating) else jnp.iinfo(x.dtype).min
    return lax.reduce_window(x, np.array(init, x.dtype), lax.max, dims, steps, "VALID")
