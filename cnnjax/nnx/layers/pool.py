"""Pooling layers in Flax NNX over the pooling functions of :mod:`cnnjax.functional` (no parameters).

The linen layers' Keras defaults: ``pool_size=2``, ``strides=None`` meaning ``strides = pool_size``,
``padding="valid"``; per spatial axis ``W2 = (W1 - F) // S + 1`` (valid), ``ceil(W1 / S)`` (same), channels kept.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Union

from flax import nnx

from cnnjax import _args, shapes
from cnnjax import functional as F
from cnnjax import layers as linen_layers
from cnnjax.nnx._common import check_rank, frozen
from cnnjax.nnx._route import routed

IntOrTuple = Union[int, Sequence[int]]

__all__ = ["MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D",
           "AveragePooling3D", "MinPooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D",
           "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D", "GlobalMaxPool2D"]


class _Pool(nnx.Module):
    """Window pooling over ``_rank`` spatial axes with the functional op named ``_op``."""

    _rank, _op, linen_twin = 2, "max_pool", linen_layers.MaxPooling2D

    def __init__(self, pool_size: IntOrTuple = 2, strides: Optional[IntOrTuple] = None, padding: Any = "valid",
                 data_format: str = "channels_last", ceil_mode: bool = False):
        layer = type(self).__name__
        self.pool_size = _args.as_int_tuple(pool_size, self._rank, "pool_size", layer)
        self.strides = None if strides is None else _args.as_int_tuple(strides, self._rank, "strides", layer)
        _args.padding(padding, self._rank, layer)
        self.padding = frozen(padding)
        self.data_format = _args.data_format(data_format, self._rank, layer)
        self.ceil_mode = shapes.check_flag(ceil_mode, "ceil_mode", layer)

    @routed
    def __call__(self, x):
        self._check(x)
        return getattr(F, self._op)(x, self.pool_size, self.strides, self.padding, data_format=self.data_format,
                                    ceil_mode=self.ceil_mode)

    def _check(self, x):
        check_rank(x, self._rank, type(self).__name__, self.data_format)


class _AvgPool(_Pool):
    """Average pooling; ``count_include_pad=False`` (Keras) averages only the real cells of a "same"-padded window."""

    _op = "avg_pool"

    def __init__(self, pool_size: IntOrTuple = 2, strides: Optional[IntOrTuple] = None, padding: Any = "valid",
                 data_format: str = "channels_last", ceil_mode: bool = False, count_include_pad: bool = False):
        super().__init__(pool_size, strides, padding, data_format, ceil_mode)
        self.count_include_pad = shapes.check_flag(count_include_pad, "count_include_pad", type(self).__name__)

    @routed
    def __call__(self, x):
        self._check(x)
        return F.avg_pool(x, self.pool_size, self.strides, self.padding, data_format=self.data_format,
                          ceil_mode=self.ceil_mode, count_include_pad=self.count_include_pad)


class MaxPooling1D(_Pool):
    """Max pooling over ``(batch, width, channels)``."""

    _rank, _op, linen_twin = 1, "max_pool", linen_layers.MaxPooling1D


class MaxPooling2D(_Pool):
    """Max pooling over ``(batch, height, width, channels)``: 26x26x32 -> 13x13x32 with the defaults."""

    _rank, _op, linen_twin = 2, "max_pool", linen_layers.MaxPooling2D


class MaxPooling3D(_Pool):
    """Max pooling over ``(batch, depth, height, width, channels)``."""

    _rank, _op, linen_twin = 3, "max_pool", linen_layers.MaxPooling3D


class MinPooling2D(_Pool):
    """Min pooling over ``(batch, height, width, channels)`` (padded cells never win)."""

    _rank, _op, linen_twin = 2, "min_pool", linen_layers.MinPooling2D


class AveragePooling1D(_AvgPool):
    """Average pooling over ``(batch, width, channels)``."""

    _rank, linen_twin = 1, linen_layers.AveragePooling1D


class AveragePooling2D(_AvgPool):
    """Average pooling over ``(batch, height, width, channels)``: 11x11x64 -> 5x5x64 with the defaults."""

    _rank, linen_twin = 2, linen_layers.AveragePooling2D


class AveragePooling3D(_AvgPool):
    """Average pooling over ``(batch, depth, height, width, channels)``."""

    _rank, linen_twin = 3, linen_layers.AveragePooling3D


class _GlobalPool(nnx.Module):
    """One value per channel over both spatial axes: ``(N, H, W, C) -> (N, C)`` (keepdims: ``(N, 1, 1, C)``)."""

    _op, linen_twin = "global_avg_pool", linen_layers.GlobalAveragePooling2D

    def __init__(self, data_format: str = "channels_last", keepdims: bool = False):
        layer = type(self).__name__
        self.data_format = _args.data_format(data_format, 2, layer)
        self.keepdims = shapes.check_flag(keepdims, "keepdims", layer)

    @routed
    def __call__(self, x):
        check_rank(x, 2, type(self).__name__, self.data_format)
        return getattr(F, self._op)(x, data_format=self.data_format, keepdims=self.keepdims)


class GlobalAveragePooling2D(_GlobalPool):
    """Mean over height and width: ``(N, H, W, C) -> (N, C)`` (the ResNet head)."""

    _op, linen_twin = "global_avg_pool", linen_layers.GlobalAveragePooling2D


class GlobalMaxPooling2D(_GlobalPool):
    """Max over height and width: ``(N, H, W, C) -> (N, C)``."""

    _op, linen_twin = "global_max_pool", linen_layers.GlobalMaxPooling2D


MaxPool2D, AvgPool2D = MaxPooling2D, AveragePooling2D
GlobalAvgPool2D, GlobalMaxPool2D = GlobalAveragePooling2D, GlobalMaxPooling2D
