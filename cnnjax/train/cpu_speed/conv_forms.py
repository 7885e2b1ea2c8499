"""Equivalent forms of a convolution that XLA:CPU trains faster than one ``lax.conv_general_dilated``.

Each computes, for a channels-last input ``x (N, *spatial, C)`` and a kernel ``(*k, C, F)`` (groups = 1)::

    y[n, o, f] = sum_{j, c} x_pad[n, o * s + j * d, c] * kernel[j, c, f]      (o, j, s, d per spatial axis)

with ``x_pad`` the input padded by ``(lo, hi)`` zeros per spatial axis, and
``out = (n + lo + hi - d * (k - 1) - 1) // s + 1`` cells per spatial axis.

- :func:`conv_xla`: one ``lax.conv_general_dilated`` (what :func:`cnnjax.functional.conv` computes).
- :func:`conv_im2col`: the patch matrix ``P (N, *out, prod(k) * C)`` is built from ``prod(k)`` strided slices of
  ``x_pad`` concatenated on the channel axis (slice order = the kernel's row-major offsets, so ``P`` lines up with
  ``kernel.reshape(prod(k) * C, F)``), then ``y = P @ kernel.reshape(prod(k) * C, F)``: one matrix product.
  Its gradients are again slices, pads and matrix products.
- :func:`conv_im2col_vjp`: :func:`conv_im2col` with a custom VJP whose kernel gradient is
  ``dk = P^T @ dy`` written as ``dot_general(P, dy)``, the patch matrix first (JAX's own transpose of the matrix
  product puts ``dy`` first, which XLA:CPU then transposes inside the fusion of everything before it).
- :func:`conv_split_grad`: :func:`conv_xla` forward and input gradient, with the kernel gradient computed by
  XLA for batch chunks of ``SPLIT_GRAD_CHUNK`` images and summed (the kernel gradient is a sum over the batch):
  XLA:CPU computes each chunk's kernel gradient faster per image than the whole batch's.

Which convolution takes which form (:func:`uses_im2col`, :func:`uses_split_grad`): the im2col form for ungrouped
convolutions whose patch matrix is thin (``prod(k) * C <= IM2COL_MAX_DEPTH``), the split kernel gradient for every
other convolution whose batch is larger than one chunk. The two custom-VJP forms give reverse mode to any order
and no forward mode, so they are for a training step's reverse-mode gradient only (:mod:`.swap` puts them
there). All forms agree with :func:`conv_xla` to float rounding (another summation order);
``tests/test_cpu_speed.py`` holds them against it, values and gradients. The measurements behind the rules are
in ``experiments/SPEED.md`` (``experiments/bench_cpu_ops.py``).
"""
from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["conv_xla", "conv_im2col", "conv_im2col_vjp", "conv_split_grad", "uses_im2col", "uses_split_grad",
           "IM2COL_MAX_DEPTH", "SPLIT_GRAD_CHUNK"]

# Largest patch depth prod(kernel_size) * in_channels for which XLA:CPU gets the im2col form.
IM2COL_MAX_DEPTH = 32
# Images per batch chunk of conv_split_grad's kernel gradient (chunk sizes compared: experiments/SPEED.md).
SPLIT_GRAD_CHUNK = 8


def conv_xla(x, kernel, *, strides, padding, dilation, groups=1, dimension_numbers, precision=None):
    """``lax.conv_general_dilated`` with the given layouts (``dimension_numbers = (lhs, rhs, lhs)``)."""
    return lax.conv_general_dilated(x, kernel, window_strides=strides, padding=padding, rhs_dilation=dilation,
                                    dimension_numbers=dimension_numbers, feature_group_count=groups,
                                    precision=precision)


def conv_im2col(x, kernel, *, strides, padding, dilation, channels_last=True, precision=None):
    """Ungrouped convolution as patches @ kernel (see the module docstring).

    Args:
      x: ``(N, *spatial, C)`` (or ``(N, C, *spatial)`` with ``channels_last=False``).
      kernel: ``(*k, C, F)``.
      strides, dilation: one int per spatial axis; padding: one ``(lo, hi)`` pair per spatial axis.

    Returns ``(N, *out, F)`` (or ``(N, F, *out)``), the dtype of ``x``.
    """
    if not channels_last:
        x = jnp.moveaxis(x, 1, -1)
    patches = _patches(x, kernel.shape[:-2], strides, padding, dilation)
    weights = kernel.reshape(patches.shape[-1], kernel.shape[-1])
    y = lax.dot_general(patches, weights, (((x.ndim - 1,), (0,)), ((), ())), precision=precision)
    return y if channels_last else jnp.moveaxis(y, -1, 1)


def _patches(x, ksize, strides, padding, dilation):
    """The patch matrix ``P (N, *out, prod(k) * C)`` of a channels-last ``x``: ``prod(k)`` strided slices of the
    padded input, concatenated on the channel axis in the kernel's row-major offset order."""
    n_sp = len(ksize)
    xp = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), *[(lo, hi, 0) for lo, hi in padding], (0, 0, 0)])
    out = [(xp.shape[1 + a] - dilation[a] * (ksize[a] - 1) - 1) // strides[a] + 1 for a in range(n_sp)]
    slices = []
    for offset in itertools.product(*(range(k) for k in ksize)):
        start = [0, *(j * d for j, d in zip(offset, dilation)), 0]
        limit = [xp.shape[0], *(j * d + (o - 1) * s + 1 for j, d, o, s in zip(offset, dilation, out, strides)),
                 x.shape[-1]]
        slices.append(lax.slice(xp, start, limit, (1, *strides, 1)))
    return slices[0] if len(slices) == 1 else lax.concatenate(slices, x.ndim - 1)


def _with_kernel_grad(plain, kernel_grad):
    """``plain(x, k)`` with a custom VJP: the input gradient is JAX's transpose of ``plain``, the kernel gradient
    ``kernel_grad(x, dy, k)``."""
    @jax.custom_vjp
    def f(x, k):
        return plain(x, k)

    def fwd(x, k):
        return plain(x, k), (x, k)

    def bwd(res, dy):
        x, k = res
        (dx,) = jax.linear_transpose(lambda x_: plain(x_, k), x)(dy)
        return dx, kernel_grad(x, dy, k).astype(k.dtype)

    f.defvjp(fwd, bwd)
    return f


def conv_im2col_vjp(x, kernel, *, strides, padding, dilation, channels_last=True, precision=None):
    """:func:`conv_im2col` with a custom VJP: the kernel gradient is ``dot_general(P, dy)`` over the batch and
    output axes (the patch matrix first; see the module docstring), the input gradient JAX's transpose of
    :func:`conv_im2col`. Same arguments and values; reverse mode to any order, no forward mode."""
    plain = lambda x, k: conv_im2col(x, k, strides=strides, padding=padding, dilation=dilation,  # noqa: E731
                                     channels_last=channels_last, precision=precision)

    def kernel_grad(x, dy, k):
        if not channels_last:
            x, dy = jnp.moveaxis(x, 1, -1), jnp.moveaxis(dy, 1, -1)
        patches = _patches(x, k.shape[:-2], strides, padding, dilation)
        axes = tuple(range(x.ndim - 1))                                    # batch and output axes
        return lax.dot_general(patches, dy, ((axes, axes), ((), ())), precision=precision).reshape(k.shape)

    return _with_kernel_grad(plain, kernel_grad)(x, kernel)


def conv_split_grad(x, kernel, *, strides, padding, dilation, groups=1, dimension_numbers, precision=None,
                    chunk: int | None = None):
    """:func:`conv_xla` whose kernel gradient is XLA's own, summed over batch chunks of ``chunk`` images
    (``SPLIT_GRAD_CHUNK``; the last chunk may be shorter). Same arguments and values as :func:`conv_xla`.

    The kernel gradient sums over the batch, so ``dk = sum_c dk(x[c], dy[c])`` over any split of the batch
    into chunks ``c``; XLA:CPU computes a small chunk's faster per image than the whole batch's (see the
    module docstring). A ``jax.custom_vjp``: reverse mode to any order, no forward mode.
    """
    chunk = SPLIT_GRAD_CHUNK if chunk is None else chunk
    plain = lambda x, k: conv_xla(x, k, strides=strides, padding=padding, dilation=dilation,  # noqa: E731
                                  groups=groups, dimension_numbers=dimension_numbers, precision=precision)

    def kernel_grad(x, dy, k):
        dk = None
        for start in range(0, x.shape[0], chunk):      # the batch axis is 0 in every layout
            chunk_x, chunk_dy = x[start:start + chunk], dy[start:start + chunk]
            (part,) = jax.linear_transpose(lambda k_: plain(chunk_x, k_), k)(chunk_dy)
            dk = part if dk is None else dk + part
        return dk

    return _with_kernel_grad(plain, kernel_grad)(x, kernel)


def uses_split_grad(kernel_shape, groups: int, batch: int) -> bool:
    """Whether XLA:CPU gets :func:`conv_split_grad`: every convolution without the im2col form whose batch
    holds more than one chunk."""
    return batch > SPLIT_GRAD_CHUNK and not uses_im2col(kernel_shape, groups)


def uses_im2col(kernel_shape, groups: int) -> bool:
    """Whether XLA:CPU gets the im2col form for a kernel ``(*k, C // groups, F)`` (see the module docstring)."""
    return groups == 1 and math.prod(kernel_shape[:-1]) <= IM2COL_MAX_DEPTH
