"""Plain NumPy loop references of convolution and pooling, for testing (slow, obvious, independent).

They share no code with :mod:`cnnjax.shapes` or :mod:`cnnjax.functional`: padding and output sizes are worked out
here again from the definitions, so that a test comparing the two can catch a wrong formula in either.
All arrays are channels-last: ``(N, *spatial, C)``; kernels ``(*k, C // groups, filters)``.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

__all__ = ["conv", "max_pool", "min_pool", "avg_pool", "same_padding"]


def _tuple(v, n):
    return (int(v),) * n if np.isscalar(v) else tuple(int(a) for a in v)


def same_padding(n: int, k: int, s: int, d: int = 1):
    """TensorFlow's SAME padding of one axis, from its definition: output ceil(n / s), extra cell at the end."""
    k_eff = d * (k - 1) + 1
    out = math.ceil(n / s)
    total = max((out - 1) * s + k_eff - n, 0)
    return total // 2, total - total // 2


def _pairs(padding, spatial, ksize, strides, dilation):
    n = len(spatial)
    if isinstance(padding, str):
        if padding.lower() == "valid":
            return [(0, 0)] * n
        return [same_padding(size, k, s, d) for size, k, s, d in zip(spatial, ksize, strides, dilation)]
    if np.isscalar(padding):
        return [(int(padding), int(padding))] * n
    return [(int(p), int(p)) if np.isscalar(p) else (int(p[0]), int(p[1])) for p in padding]


def conv(x, kernel, strides=1, padding="valid", dilation=1, groups=1):
    """Convolution (cross-correlation, as every DL framework) by an explicit loop over output positions."""
    x = np.asarray(x, np.float64)
    kernel = np.asarray(kernel, np.float64)
    n = kernel.ndim - 2
    ksize = kernel.shape[:n]
    strides, dilation = _tuple(strides, n), _tuple(dilation, n)
    pairs = _pairs(padding, x.shape[1:-1], ksize, strides, dilation)
    xp = np.pad(x, [(0, 0)] + list(pairs) + [(0, 0)])
    k_eff = [d * (k - 1) + 1 for k, d in zip(ksize, dilation)]
    out = [(p - ke) // s + 1 for p, ke, s in zip(xp.shape[1:-1], k_eff, strides)]
    cin_g = kernel.shape[-2]
    f_g = kernel.shape[-1] // groups
    y = np.zeros((x.shape[0], *out, kernel.shape[-1]))
    for pos in itertools.product(*[range(o) for o in out]):
        window = tuple(slice(p * s, p * s + ke, d) for p, s, ke, d in zip(pos, strides, k_eff, dilation))
        patch = xp[(slice(None),) + window]                      # (N, *k, C)
        for g in range(groups):
            pg = patch[..., g * cin_g:(g + 1) * cin_g]
            kg = kernel[..., g * f_g:(g + 1) * f_g]
            y[(slice(None),) + pos + (slice(g * f_g, (g + 1) * f_g),)] = np.tensordot(
                pg, kg, axes=(list(range(1, n + 2)), list(range(n + 1))))
    return y


def _pool(x, pool_size, strides, padding, ceil_mode, reduce, count_include_pad=False):
    x = np.asarray(x, np.float64)
    n = x.ndim - 2
    window = _tuple(pool_size, n)
    strides = window if strides is None else _tuple(strides, n)
    pairs = _pairs(padding, x.shape[1:-1], window, strides, (1,) * n)
    out = []
    for size, k, s, (lo, hi) in zip(x.shape[1:-1], window, strides, pairs):
        span = size + lo + hi - k
        o = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (o - 1) * s >= size + lo:      # PyTorch: the last window must start inside
            o -= 1
        out.append(o)
    y = np.zeros((x.shape[0], *out, x.shape[-1]))
    for pos in itertools.product(*[range(o) for o in out]):
        starts = [p * s - lo for p, s, (lo, _) in zip(pos, strides, pairs)]
        real = tuple(slice(max(a, 0), min(a + k, size)) for a, k, size in zip(starts, window, x.shape[1:-1]))
        cells = x[(slice(None),) + real].reshape(x.shape[0], -1, x.shape[-1])
        if reduce == "avg" and count_include_pad:
            # cells of the window inside the zero-padded input (not the ceil_mode overhang)
            count = math.prod(min(a + k, size + hi) - a for a, k, size, (_, hi)
                              in zip(starts, window, x.shape[1:-1], pairs))
            y[(slice(None),) + pos] = cells.sum(axis=1) / count
        else:
            y[(slice(None),) + pos] = {"max": np.max, "min": np.min, "avg": np.mean}[reduce](cells, axis=1)
    return y


def max_pool(x, pool_size, strides=None, padding="valid", ceil_mode=False):
    return _pool(x, pool_size, strides, padding, ceil_mode, "max")


def min_pool(x, pool_size, strides=None, padding="valid", ceil_mode=False):
    return _pool(x, pool_size, strides, padding, ceil_mode, "min")


def avg_pool(x, pool_size, strides=None, padding="valid", ceil_mode=False, count_include_pad=False):
    return _pool(x, pool_size, strides, padding, ceil_mode, "avg", count_include_pad)
