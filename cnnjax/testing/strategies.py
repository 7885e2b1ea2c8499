"""Hypothesis strategies that draw valid convolution and pooling configurations.

Each draw is a dict of keyword arguments plus the input and kernel shapes, guaranteed to be legal (the dilated
kernel fits the padded input, channels divide into groups), so users can property-test their own layers::

    from hypothesis import given
    from cnnjax.testing import strategies as cst

    @given(cst.conv_configs())
    def test_my_layer(cfg):
        ...  # cfg["input_shape"], cfg["kernel_shape"], cfg["strides"], cfg["padding"], ...
"""
from __future__ import annotations

import math

from hypothesis import strategies as st

__all__ = ["paddings", "conv_configs", "pool_configs"]


def _same(n, k, s, d):
    out = math.ceil(n / s)
    total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
    return total // 2, total - total // 2


@st.composite
def paddings(draw, rank: int, max_pad: int = 2):
    """Any accepted padding form: 'valid'/'same' in any case, an int, one int per axis, or (low, high) pairs."""
    kind = draw(st.sampled_from(["valid", "same", "int", "ints", "pairs"]))
    if kind in ("valid", "same"):
        return draw(st.sampled_from([kind, kind.upper()]))
    if kind == "int":
        return draw(st.integers(0, max_pad))
    if kind == "ints":
        return tuple(draw(st.integers(0, max_pad)) for _ in range(rank))
    return tuple((draw(st.integers(0, max_pad)), draw(st.integers(0, max_pad))) for _ in range(rank))


def _pairs(padding, sizes, ksize, strides, dilation):
    if isinstance(padding, str):
        if padding.lower() == "valid":
            return [(0, 0)] * len(sizes)
        return [_same(n, k, s, d) for n, k, s, d in zip(sizes, ksize, strides, dilation)]
    if isinstance(padding, int):
        return [(padding, padding)] * len(sizes)
    return [(p, p) if isinstance(p, int) else tuple(p) for p in padding]


@st.composite
def conv_configs(draw, ranks=(1, 2, 3), max_size: int = 9, max_kernel: int = 4, max_stride: int = 3,
                 max_dilation: int = 2, max_channels: int = 4, grouped: bool = True):
    """A legal convolution: dict with input_shape, kernel_shape, strides, padding, dilation, groups, data_format.

    Shapes follow ``data_format``; the kernel is always ``(*k, C // groups, filters)``.
    """
    n = draw(st.sampled_from(ranks))
    groups = draw(st.integers(1, 3)) if grouped else 1
    c_in = groups * draw(st.integers(1, max_channels))
    filters = groups * draw(st.integers(1, max_channels))
    ksize = tuple(draw(st.integers(1, max_kernel)) for _ in range(n))
    strides = tuple(draw(st.integers(1, max_stride)) for _ in range(n))
    dilation = tuple(draw(st.integers(1, max_dilation)) for _ in range(n))
    padding = draw(paddings(n))
    sizes = []
    for k, d in zip(ksize, dilation):
        sizes.append(draw(st.integers(1, max_size)))
    pairs = _pairs(padding, sizes, ksize, strides, dilation)
    # make the dilated kernel fit the padded input by growing the input where needed
    sizes = [max(size, d * (k - 1) + 1 - lo - hi, 1) for size, k, d, (lo, hi) in zip(sizes, ksize, dilation, pairs)]
    if isinstance(padding, str) and padding.lower() == "same":
        pass  # SAME always fits
    data_format = draw(st.sampled_from(["channels_last", "channels_first"]))
    batch = draw(st.integers(1, 2))
    shape = (batch, *sizes, c_in) if data_format == "channels_last" else (batch, c_in, *sizes)
    return dict(input_shape=shape, kernel_shape=(*ksize, c_in // groups, filters), strides=strides,
                padding=padding, dilation=dilation, groups=groups, data_format=data_format)


@st.composite
def pool_configs(draw, ranks=(1, 2, 3), max_size: int = 9, max_pool: int = 4, max_stride: int = 3):
    """A legal pooling: dict with input_shape, pool_size, strides (None allowed), padding, data_format, ceil_mode."""
    n = draw(st.sampled_from(ranks))
    window = tuple(draw(st.integers(1, max_pool)) for _ in range(n))
    strides = draw(st.one_of(st.none(), st.tuples(*[st.integers(1, max_stride)] * n)))
    padding = draw(st.one_of(st.sampled_from(["valid", "same", "SAME"]),
                             st.tuples(*[st.tuples(st.integers(0, 1), st.integers(0, 1))] * n)))
    if not isinstance(padding, str):
        # keep every window touching real input (as PyTorch requires pad <= pool_size / 2)
        padding = tuple((min(lo, k // 2), min(hi, k // 2)) for (lo, hi), k in zip(padding, window))
    sizes = [max(draw(st.integers(1, max_size)), k) for k in window]
    data_format = draw(st.sampled_from(["channels_last", "channels_first"]))
    channels = draw(st.integers(1, 3))
    batch = draw(st.integers(1, 2))
    shape = (batch, *sizes, channels) if data_format == "channels_last" else (batch, channels, *sizes)
    return dict(input_shape=shape, pool_size=window, strides=strides, padding=padding, data_format=data_format,
                ceil_mode=draw(st.booleans()))
