"""Equivalent implementations of the convolution in :func:`cnnjax.functional.conv`, chosen per backend.

Both compute, for a channels-last input ``x (N, *spatial, C)`` and a kernel ``(*k, C, F)`` (groups = 1)::

    y[n, o, f] = sum_{j, c} x_pad[n, o * s + j * d, c] * kernel[j, c, f]      (o, j, s, d per spatial axis)

with ``x_pad`` the input padded by ``(lo, hi)`` zeros per spatial axis, and
``out = (n + lo + hi - d * (k - 1) - 1) // s + 1`` cells per spatial axis.

- :func:`conv_xla`: one ``lax.conv_general_dilated``; the form every backend gets by default.
- :func:`conv_im2col`: the patch matrix ``P (N, *out, prod(k) * C)`` is built from ``prod(k)`` strided slices of
  ``x_pad`` concatenated on the channel axis (slice order = the kernel's row-major offsets, so ``P`` lines up with
  ``kernel.reshape(prod(k) * C, F)``), then ``y = P @ kernel.reshape(prod(k) * C, F)``: one matrix product.
  Its gradients are again slices, pads and matrix products.
- :func:`conv_im2col_vjp`: :func:`conv_im2col` with a custom VJP whose kernel gradient is
  ``dk = P^T @ dy`` written as ``dot_general(P, dy)``, the patch matrix first. JAX's own transpose of the
  matrix product puts ``dy`` first, and XLA:CPU then writes ``dy`` transposed inside the fusion of everything
  before it (BatchNorm's and dropout's gradients in the Flax example CNN): that one fusion took 10 ms of a 65 ms
  step; transposing the thin patch matrix (``prod(k) * C <= 32`` columns) instead costs ~1 ms.
- :func:`conv_split_grad`: :func:`conv_xla` forward and input gradient, with the kernel gradient computed by
  XLA for batch chunks of ``SPLIT_GRAD_CHUNK`` images and summed (the kernel gradient is a sum over the batch).
  XLA:CPU computes it as a convolution whose "batch" is the channel axis and whose features are the images;
  for a whole batch of 128 that took 3-4x longer per image than for chunks of 8 (Flax example CNN's 32->64
  conv: 25.4 ms vs 7.0 ms; ResNet-20's 16->16 conv at 32x32: 21.5 vs 5.3 ms), and 4x its forward pass.

:func:`conv_general` picks one at lowering time with ``lax.platform_dependent``: on XLA:CPU the im2col form (with
its custom VJP) for ungrouped convolutions whose patch matrix is small (``prod(k) * C <= IM2COL_MAX_DEPTH``),
where it was measured faster, forward and backward, than XLA:CPU's convolution, and the split kernel gradient
for every other convolution whose batch is larger than one chunk (``experiments/bench_cpu_ops.py``; figures in
``experiments/SPEED.md``); the XLA convolution everywhere else (GPU, TPU, small batches) and inside
:func:`cnnjax.functional.plain_lax` (forward-mode autodiff). The results agree to float rounding (different
summation order); ``tests/test_bench_impls.py`` holds the forms against each other (values and gradients),
``tests/test_conv.py`` the dispatched op against a NumPy loop and TensorFlow.
"""
from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
from jax import lax

from cnnjax.functional import fast_paths

__all__ = ["conv_xla", "conv_im2col", "conv_im2col_vjp", "conv_split_grad", "conv_general", "uses_im2col",
           "uses_split_grad", "IM2COL_MAX_DEPTH", "SPLIT_GRAD_CHUNK"]

# Largest patch depth prod(kernel_size) * in_channels for which XLA:CPU gets the im2col form.
IM2COL_MAX_DEPTH = 32
# Images per batch chunk of conv_split_grad's kernel gradient (measured: 4-16 all ~3x faster than the whole
# batch of 128 on the 2-core CPU; 8 is within 10% of the best on every layer measured).
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
    into chunks ``c``; XLA:CPU computes each chunk's 3-4x faster per image than the whole batch's (see the
    module docstring). A ``jax.custom_vjp``: reverse mode to any order, no forward mode (see
    :func:`cnnjax.functional.plain_lax`).
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


def conv_general(x, kernel, *, strides, padding, dilation, groups, dimension_numbers, precision=None):
    """The convolution of ``cnnjax.functional.conv``: on CPU :func:`conv_im2col_vjp` where :func:`uses_im2col`
    says so and :func:`conv_split_grad` where :func:`uses_split_grad` does (neither inside ``plain_lax()``),
    :func:`conv_xla` otherwise (chosen when the computation is lowered for its platform)."""
    kw = dict(strides=tuple(strides), padding=tuple(tuple(p) for p in padding), dilation=tuple(dilation))
    xla = lambda x, k: conv_xla(x, k, groups=groups, dimension_numbers=dimension_numbers,  # noqa: E731
                                precision=precision, **kw)
    channels_last = dimension_numbers[0][-1] == "C"
    if not fast_paths.enabled():
        return xla(x, kernel)
    if uses_im2col(kernel.shape, groups):
        cpu = lambda x, k: conv_im2col_vjp(x, k, channels_last=channels_last, precision=precision,  # noqa: E731
                                           **kw)
    elif uses_split_grad(kernel.shape, groups, x.shape[0]):
        cpu = lambda x, k: conv_split_grad(x, k, groups=groups, dimension_numbers=dimension_numbers,  # noqa: E731
                                           precision=precision, **kw)
    else:
        return xla(x, kernel)
    return lax.platform_dependent(x, kernel, cpu=cpu, default=xla)
