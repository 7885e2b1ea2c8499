"""Convolution as pure functions on ``jax.lax.conv_general_dilated``.

Layouts: inputs ``(N, *spatial, C)`` for ``channels_last`` (NWC/NHWC/NDHWC) or ``(N, C, *spatial)`` for
``channels_first``; kernels are always ``(*kernel_size, C // groups, filters)`` (HWIO, as ``tf.nn.conv2d`` and
Keras), whatever the data format. Output size per spatial axis (see :mod:`cnnjax.shapes`)::

    out = (n + lo + hi - d * (k - 1) - 1) // s + 1
"""
from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from cnnjax import _args, shapes
from cnnjax.functional import checks

__all__ = ["conv", "conv1d", "conv2d", "conv3d", "conv_transpose"]


def _prepare(x, kernel, bias, fn):
    x = checks.floating(x, "x", fn)
    kernel = checks.floating(kernel, "kernel", fn)
    if bias is not None:
        bias = checks.floating(bias, "bias", fn)
    return x, kernel, bias


def _add_bias(y, bias, filters, fmt, fn):
    if bias is None:
        return y
    if bias.shape != (filters,):
        raise ValueError(
            f"{fn}: bias of shape {tuple(bias.shape)} must have shape ({filters},), one value per filter.")
    axis = _args.channel_axis(fmt, y.ndim)
    shape = [1] * y.ndim
    shape[axis] = filters
    return y + bias.astype(y.dtype).reshape(shape)


def conv(x, kernel, bias=None, *, strides=1, padding="valid", dilation=1, groups: int = 1,
         data_format: str = "channels_last", precision=None, _fn: str = "conv"):
    """N-D convolution (1-D, 2-D or 3-D; the spatial rank comes from the kernel), as in ``tf.nn.convolution``.

    Args:
      x: input ``(N, *spatial, C)`` (``channels_last``) or ``(N, C, *spatial)`` (``channels_first``), floating.
      kernel: ``(*kernel_size, C // groups, filters)``.
      bias: optional ``(filters,)``.
      strides, dilation: an int or one int per spatial axis, each >= 1.
      padding: ``"valid"``, ``"same"`` (any case; TensorFlow's rule, extra cell at the end), an int, one int per
        axis, or one ``(low, high)`` pair per axis.
      groups: split the channels into ``groups`` independent convolutions; ``groups == C`` is depthwise.
      data_format: ``"channels_last"``/``"channels_first"`` or ``"NHWC"``/``"NCHW"`` (and 1-D/3-D equivalents).

    Returns:
      ``(N, *out, filters)`` (or ``(N, filters, *out)``), ``out = (n + lo + hi - d*(k-1) - 1) // s + 1``.

    >>> import jax.numpy as jnp
    >>> x = jnp.arange(1., 10.).reshape(1, 3, 3, 1)         # [[1,2,3],[4,5,6],[7,8,9]]
    >>> conv(x, jnp.ones((2, 2, 1, 1)))[0, :, :, 0].tolist()
    [[12.0, 16.0], [24.0, 28.0]]
    """
    x, kernel, bias = _prepare(x, kernel, bias, _fn)
    precision = checks.precision(precision, _fn)
    checks.rank(kernel, (3, 4, 5), "kernel", _fn,
                 "a kernel is (*kernel_size, in_channels // groups, filters) with 1, 2 or 3 spatial axes")
    n = kernel.ndim - 2
    fmt = _args.data_format(data_format, n, _fn)
    lhs, rhs = _args.layout_names(fmt, n)
    checks.rank(x, n + 2, "x", _fn, f"a {kernel.shape[:-2]} kernel needs a rank-{n + 2} input ({lhs})")
    _, pairs, strides, dilation, fmt = shapes.conv_pairs(
        x.shape, kernel.shape, strides, padding, dilation, groups, fmt, fn=_fn)
    dtype = checks.common_dtype(x, kernel)
    # "same" on a jax.export symbolic size gives symbolic pads, which lax takes only as its own "SAME" (the rule
    # shapes.padding_amounts follows: the odd cell at the end)
    y = lax.conv_general_dilated(
        x.astype(dtype), kernel.astype(dtype), window_strides=strides,
        padding="SAME" if _args.has_symbolic(pairs) else pairs, rhs_dilation=dilation,
        dimension_numbers=(lhs, rhs, lhs), feature_group_count=groups, precision=precision)
    return _add_bias(y, bias, kernel.shape[-1], fmt, _fn)


def _fixed_rank(n):
    name = f"conv{n}d"

    def op(x, kernel, bias=None, *, strides=1, padding="valid", dilation=1, groups: int = 1,
           data_format: str = "channels_last", precision=None):
        kernel = jnp.asarray(kernel)
        if kernel.ndim != n + 2:
            raise ValueError(
                f"{name}: kernel of shape {tuple(kernel.shape)} has rank {kernel.ndim}, but a {n}-D convolution "
                f"needs a rank-{n + 2} kernel (*kernel_size, in_channels // groups, filters).")
        return conv(x, kernel, bias, strides=strides, padding=padding, dilation=dilation, groups=groups,
                    data_format=data_format, precision=precision, _fn=name)

    op.__name__ = op.__qualname__ = name
    op.__doc__ = (f"{n}-D convolution: :func:`conv` with a check that the kernel has {n} spatial axes.\n\n"
                  f"Input rank {n + 2}, kernel ``(*kernel_size[{n}], in_channels // groups, filters)``.")
    return op


conv1d = _fixed_rank(1)
conv2d = _fixed_rank(2)
conv3d = _fixed_rank(3)


def conv_transpose(x, kernel, bias=None, *, strides=1, padding="valid", dilation=1,
                   data_format: str = "channels_last", precision=None):
    """Transposed convolution (a.k.a. deconvolution): the adjoint of :func:`conv`, and its inverse shape map.

    ``kernel`` is ``(*kernel_size, C, filters)`` with ``C`` the channels of ``x``. ``conv_transpose(y, K)`` equals
    the gradient with respect to its input of ``conv(·, K.swapaxes(-1, -2))`` (same strides, padding,
    dilation), so a conv with the same settings maps its output back to the input's shape. Output size per axis,
    as Keras' ``Conv2DTranspose``: ``"valid"``: ``n * s + max(k_eff - s, 0)``; ``"same"``: ``n * s``; explicit
    ``(lo, hi)`` (the forward conv's padding): ``(n - 1) * s + k_eff - lo - hi``.
    """
    fn = "conv_transpose"
    x, kernel, bias = _prepare(x, kernel, bias, fn)
    precision = checks.precision(precision, fn)
    checks.rank(kernel, (3, 4, 5), "kernel", fn, "a kernel is (*kernel_size, in_channels, filters)")
    n = kernel.ndim - 2
    fmt = _args.data_format(data_format, n, fn)
    lhs, rhs = _args.layout_names(fmt, n)
    checks.rank(x, n + 2, "x", fn, f"a {kernel.shape[:-2]} kernel needs a rank-{n + 2} input ({lhs})")
    out_shape, strides, dilation, pad, fmt = shapes.conv_transpose_geometry(
        x.shape, kernel.shape, strides, padding, dilation, fmt, fn=fn)
    spatial_in = [x.shape[a] for a in _args.spatial_axes(fmt, x.ndim)]
    spatial_out = [out_shape[a] for a in _args.spatial_axes(fmt, len(out_shape))]
    pads = []
    for axis in range(n):
        k_eff = shapes.effective_kernel_size(kernel.shape[axis], dilation[axis])
        if isinstance(pad, str):
            # Padding of the forward conv that maps spatial_out back to spatial_in.
            lo, hi = (0, 0) if pad == "VALID" else shapes.padding_amounts(
                spatial_out[axis], kernel.shape[axis], strides[axis], "same", dilation[axis])
        else:
            lo, hi = pad[axis]
        extra = spatial_out[axis] - ((spatial_in[axis] - 1) * strides[axis] + k_eff - lo - hi)
        pads.append((k_eff - 1 - lo, k_eff - 1 - hi + extra))
    dtype = checks.common_dtype(x, kernel)
    flipped = jnp.flip(kernel, axis=tuple(range(n))).astype(dtype)
    y = lax.conv_general_dilated(
        x.astype(dtype), flipped, window_strides=(1,) * n, padding=pads, lhs_dilation=strides,
        rhs_dilation=dilation, dimension_numbers=(lhs, rhs, lhs), precision=precision)
    return _add_bias(y, bias, kernel.shape[-1], fmt, fn)
