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
- :func:`conv_tap_grad`: :func:`conv_xla` forward and input gradient, with another kernel gradient. XLA:CPU
  computes ``dk[j, c, f] = sum_{n,o} x_pad[n, o + j*d, c] * dy[n, o, f]`` as a convolution whose "batch" is the
  channel axis and whose window is the whole image: 24 ms of the Flax example CNN's 56 ms step, 4x its forward
  convolution. Here ``x_pad`` is transposed once to ``(C, N, *padded)``, and each tap ``j`` is a slice of it
  times ``dy``: a ``(C, N * out) @ (N * out, F)`` product with no transposed operand (~18 ms for that layer).

:func:`conv_general` picks one at lowering time with ``lax.platform_dependent``: on XLA:CPU the im2col form (with
its custom VJP) for ungrouped convolutions whose patch matrix is small (``prod(k) * C <= IM2COL_MAX_DEPTH``),
where it was measured faster, forward and backward, than XLA:CPU's convolution, and the tap-gradient form for
ungrouped stride-1 convolutions with ``C * F >= TAP_GRAD_MIN_WIDTH`` (narrower ones, e.g. ResNet-20's 16- and
32-channel stages, were slower with it) (``experiments/bench_cpu_ops.py``; figures in ``experiments/SPEED.md``);
the XLA convolution everywhere else (GPU, TPU, grouped, strided or narrow convolutions) and inside
:func:`cnnjax.functional.plain_lax` (forward-mode autodiff). The results agree to float
rounding (different summation order); ``tests/test_bench_impls.py`` holds the forms against each other (values
and gradients), ``tests/test_conv.py`` the dispatched op against a NumPy loop and TensorFlow.
"""
from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
from jax import lax

from cnnjax.functional import fast_paths

__all__ = ["conv_xla", "conv_im2col", "conv_im2col_vjp", "conv_tap_grad", "conv_general", "uses_im2col",
           "uses_tap_grad", "IM2COL_MAX_DEPTH", "TAP_GRAD_MIN_WIDTH"]

# Largest patch depth prod(kernel_size) * in_channels for which XLA:CPU gets the im2col form.
IM2COL_MAX_DEPTH = 32
# Smallest in_channels * filters for which XLA:CPU gets the tap-gradient form.
TAP_GRAD_MIN_WIDTH = 2048


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


def _with_kernel_grad(plain, kernel_grad, channels_last):
    """``plain(x, k)`` with a custom VJP: the input gradient is JAX's transpose of ``plain``, the kernel gradient
    ``kernel_grad(x, dy, k)`` on channels-last ``x`` and ``dy``."""
    @jax.custom_vjp
    def f(x, k):
        return plain(x, k)

    def fwd(x, k):
        return plain(x, k), (x, k)

    def bwd(res, dy):
        x, k = res
        (dx,) = jax.linear_transpose(lambda x_: plain(x_, k), x)(dy)
        if not channels_last:
            x, dy = jnp.moveaxis(x, 1, -1), jnp.moveaxis(dy, 1, -1)
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
        patches = _patches(x, k.shape[:-2], strides, padding, dilation)
        axes = tuple(range(x.ndim - 1))                                    # batch and output axes
        return lax.dot_general(patches, dy, ((axes, axes), ((), ())), precision=precision).reshape(k.shape)

    return _with_kernel_grad(plain, kernel_grad, channels_last)(x, kernel)


def conv_tap_grad(x, kernel, *, strides, padding, dilation, dimension_numbers, precision=None):
    """:func:`conv_xla` (forward and input gradient) whose kernel gradient is one matrix product per kernel tap
    (see the module docstring). Stride 1, ungrouped; same arguments and values as :func:`conv_xla`.

    ``dk[j] = sum_{n, o} xT_pad[:, n, o + j * d] dy[n, o, :]`` with ``xT_pad`` the padded input transposed once
    to ``(C, N, *padded)``: each tap is a slice of it and a ``(C, N * out) @ (N * out, F)`` product, with no
    transposed operand and ``dy`` used as it comes. A ``jax.custom_vjp``: reverse mode to any order, no forward
    mode (see :func:`cnnjax.functional.plain_lax`).
    """
    plain = lambda x, k: conv_xla(x, k, strides=strides, padding=padding, dilation=dilation,  # noqa: E731
                                  dimension_numbers=dimension_numbers, precision=precision)

    def kernel_grad(x, dy, k):
        xt = jnp.moveaxis(x, -1, 0)                                                   # (C, N, *sizes)
        xt = lax.pad(xt, jnp.zeros((), x.dtype), [(0, 0, 0), (0, 0, 0), *[(lo, hi, 0) for lo, hi in padding]])
        out = dy.shape[1:-1]
        contract = ((tuple(range(1, x.ndim)), tuple(range(x.ndim - 1))), ((), ()))   # (N, *out) of both
        taps = []
        for offset in itertools.product(*(range(j) for j in k.shape[:-2])):
            start = [0, 0, *(j * d for j, d in zip(offset, dilation))]
            limit = [xt.shape[0], xt.shape[1], *(j * d + o for j, d, o in zip(offset, dilation, out))]
            taps.append(lax.dot_general(lax.slice(xt, start, limit), dy, contract, precision=precision))
        return jnp.stack(taps).reshape(k.shape)

    return _with_kernel_grad(plain, kernel_grad, dimension_numbers[0][-1] == "C")(x, kernel)


def uses_tap_grad(kernel_shape, groups: int, strides) -> bool:
    """Whether XLA:CPU gets :func:`conv_tap_grad`: ungrouped stride-1 convolutions without the im2col form whose
    per-tap products are wide enough, ``in_channels * filters >= TAP_GRAD_MIN_WIDTH`` (measured: see the module
    docstring)."""
    return (groups == 1 and all(s == 1 for s in strides) and not uses_im2col(kernel_shape, groups)
            and kernel_shape[-2] * kernel_shape[-1] >= TAP_GRAD_MIN_WIDTH)


def uses_im2col(kernel_shape, groups: int) -> bool:
    """Whether XLA:CPU gets the im2col form for a kernel ``(*k, C // groups, F)`` (see the module docstring)."""
    return groups == 1 and math.prod(kernel_shape[:-1]) <= IM2COL_MAX_DEPTH


def conv_general(x, kernel, *, strides, padding, dilation, groups, dimension_numbers, precision=None):
    """The convolution of ``cnnjax.functional.conv``: :func:`conv_im2col_vjp` on CPU where :func:`uses_im2col`
    says so (and not inside ``plain_lax()``), :func:`conv_xla` otherwise (chosen when the computation is lowered
    for its platform)."""
    kw = dict(strides=tuple(strides), padding=tuple(tuple(p) for p in padding), dilation=tuple(dilation))
    xla = lambda x, k: conv_xla(x, k, groups=groups, dimension_numbers=dimension_numbers,  # noqa: E731
                                precision=precision, **kw)
    channels_last = dimension_numbers[0][-1] == "C"
    if not fast_paths.enabled():
        return xla(x, kernel)
    if uses_im2col(kernel.shape, groups):
        cpu = lambda x, k: conv_im2col_vjp(x, k, channels_last=channels_last, precision=precision,  # noqa: E731
                                           **kw)
    elif uses_tap_grad(kernel.shape, groups, kw["strides"]):
        cpu = lambda x, k: conv_tap_grad(x, k, dimension_numbers=dimension_numbers,  # noqa: E731
                                         precision=precision, **kw)
    else:
        return xla(x, kernel)
    return lax.platform_dependent(x, kernel, cpu=cpu, default=xla)
