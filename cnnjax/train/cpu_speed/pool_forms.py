"""An equivalent form of window max/min pooling for XLA:CPU, where the gradient of ``lax.reduce_window``
(``select_and_scatter_add``) is slow (figures in ``experiments/SPEED.md``, from ``experiments/bench_cpu_ops.py``).

For non-overlapping windows (stride == window, no padding) over the spatial axes of ``x``::

    y[n, o, c] = max_{j in window} x[n, o * p + j, c]         (o, j, p per spatial axis; rows past the last
                                                                 whole window are dropped, as with "valid")

computed as a max over the ``prod(p)`` strided slices ``x[:, j::p, ..., :]``. The gradient goes, as in
``reduce_window``'s, to the *first* maximal cell of each window in row-major window order (ties never split), so
both forms return the same values and, for windows without a NaN, the same gradients (at a NaN the two send
the gradient to different cells; the trainer stops on a non-finite loss anyway). A ``jax.custom_vjp``: reverse
mode to any order, no forward mode.
"""
from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["window_extreme", "applies"]


def applies(dims, steps, pads) -> bool:
    """Whether :func:`window_extreme` computes this ``reduce_window`` (full-rank dims/steps/pads tuples)."""
    return (all(lo == 0 and hi == 0 for lo, hi in pads) and tuple(dims) == tuple(steps)
            and math.prod(dims) > 1)


def _slices(x, dims, out):
    for offset in itertools.product(*(range(d) for d in dims)):
        start = list(offset)
        limit = [j + (o - 1) * d + 1 for j, o, d in zip(offset, out, dims)]
        yield lax.slice(x, start, limit, dims)


def _extreme(x, dims, largest):
    out = [n // d for n, d in zip(x.shape, dims)]
    pick = jnp.maximum if largest else jnp.minimum
    y = None
    for s in _slices(x, dims, out):
        y = s if y is None else pick(y, s)
    return y


def window_extreme(x, dims, largest: bool = True):
    """Max (or min) over non-overlapping windows ``dims`` (one per axis of ``x``, 1 on batch/channel axes)."""
    dims = tuple(int(d) for d in dims)
    out = [n // d for n, d in zip(x.shape, dims)]
    x = lax.slice(x, [0] * x.ndim, [o * d for o, d in zip(out, dims)])   # whole windows only ("valid")

    @jax.custom_vjp
    def f(x):
        return _extreme(x, dims, largest)

    def fwd(x):
        y = _extreme(x, dims, largest)
        return y, (x, y)

    def bwd(res, g):
        x, y = res
        taken = jnp.zeros(y.shape, bool)
        parts = []
        for s in _slices(x, dims, out):
            hit = (s == y) & ~taken            # first maximal cell of the window, row-major order
            taken = taken | hit
            parts.append(jnp.where(hit, g, jnp.zeros((), g.dtype)))
        # parts[k] holds the cells at window offset k; interleave them back: (*out..., *dims...) -> x's layout
        stacked = jnp.stack(parts, axis=-1).reshape(*y.shape, *dims)
        perm = [a for i in range(x.ndim) for a in (i, x.ndim + i)]
        return (stacked.transpose(perm).reshape(x.shape),)

    f.defvjp(fwd, bwd)
    return f(x)
