"""Pooling layers: Keras-style Flax wrappers of the pooling functions in :mod:`cnnjax.functional`.

Keras defaults, not Flax's: ``pool_size=2``, ``strides=None`` meaning ``strides = pool_size``, ``padding="valid"``.
Per spatial axis: ``W2 = (W1 - F) // S + 1`` (valid), ``ceil(W1 / S)`` (same); channels are kept (``D2 = D1``).
Pooling has no parameters. Keras' names are the primary ones (so that summaries read as in Keras); the short
names (``MaxPool2D``, ``AvgPool2D``, ...) are aliases of the same classes.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import flax.linen as nn

from cnnjax import _args, shapes
from cnnjax import functional as F
from cnnjax.layers._common import check_rank

IntOrTuple = Union[int, Sequence[int]]

__all__ = [
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "MaxPool1D", "MaxPool2D", "MaxPool3D",
    "AveragePooling1D", "AveragePooling2D", "AveragePooling3D", "AvgPool1D", "AvgPool2D", "AvgPool3D",
    "MinPooling1D", "MinPooling2D", "MinPooling3D", "MinPool1D", "MinPool2D", "MinPool3D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
    "GlobalAvgPool1D", "GlobalAvgPool2D", "GlobalAvgPool3D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
    "GlobalMaxPool1D", "GlobalMaxPool2D", "GlobalMaxPool3D", "ChannelMaxPool",
]


class _Pool(nn.Module):
    """Window pooling over ``_rank`` spatial axes with the functional op named ``_op``."""

    pool_size: IntOrTuple = 2
    strides: Optional[IntOrTuple] = None
    padding: Any = "valid"
    data_format: str = "channels_last"
    ceil_mode: bool = False

    _rank = 2
    _op = "max_pool"

    def _window(self):
        layer = type(self).__name__
        pool = _args.as_int_tuple(self.pool_size, self._rank, "pool_size", layer)
        strides = None if self.strides is None else _args.as_int_tuple(self.strides, self._rank, "strides", layer)
        return pool, strides

    def __call__(self, x):
        check_rank(x, self._rank, type(self).__name__, self.data_format)
        pool, strides = self._window()
        return getattr(F, self._op)(x, pool, strides, self.padding, data_format=self.data_format,
                                    ceil_mode=self._flag("ceil_mode"))

    def _flag(self, name):
        """Attribute ``name`` as a bool; TypeError naming the layer for anything else (the string 'False')."""
        return shapes.check_flag(getattr(self, name), name, type(self).__name__)


class _AvgPool(_Pool):
    """Average pooling. ``count_include_pad=False`` (Keras/TF): a window at a "same"-padded border averages only
    its real cells; True (PyTorch) divides by the full window."""

    count_include_pad: bool = False

    _op = "avg_pool"

    def __call__(self, x):
        check_rank(x, self._rank, type(self).__name__, self.data_format)
        pool, strides = self._window()
        return F.avg_pool(x, pool, strides, self.padding, data_format=self.data_format,
                          ceil_mode=self._flag("ceil_mode"), count_include_pad=self._flag("count_include_pad"))


class MaxPooling1D(_Pool):
    """Max pooling over ``(batch, width, channels)``."""

    _rank, _op = 1, "max_pool"


class MaxPooling2D(_Pool):
    """Max pooling over ``(batch, height, width, channels)``: 26x26x32 -> 13x13x32 with the defaults."""

    _rank, _op = 2, "max_pool"


class MaxPooling3D(_Pool):
    """Max pooling over ``(batch, depth, height, width, channels)``."""

    _rank, _op = 3, "max_pool"


class MinPooling1D(_Pool):
    """Min pooling over ``(batch, width, channels)`` (padded cells never win)."""

    _rank, _op = 1, "min_pool"


class MinPooling2D(_Pool):
    """Min pooling over ``(batch, height, width, channels)`` (padded cells never win)."""

    _rank, _op = 2, "min_pool"


class MinPooling3D(_Pool):
    """Min pooling over ``(batch, depth, height, width, channels)``."""

    _rank, _op = 3, "min_pool"


class AveragePooling1D(_AvgPool):
    """Average pooling over ``(batch, width, channels)``."""

    _rank = 1


class AveragePooling2D(_AvgPool):
    """Average pooling over ``(batch, height, width, channels)``: 11x11x64 -> 5x5x64 with the defaults."""

    _rank = 2


class AveragePooling3D(_AvgPool):
    """Average pooling over ``(batch, depth, height, width, channels)``."""

    _rank = 3


class _GlobalPool(nn.Module):
    """One value per channel over all spatial axes: ``(N, *spatial, C) -> (N, C)`` (keepdims: ``(N, 1.., C)``)."""

    data_format: str = "channels_last"
    keepdims: bool = False

    _rank = 2
    _op = "global_avg_pool"

    def __call__(self, x):
        check_rank(x, self._rank, type(self).__name__, self.data_format)
        keepdims = shapes.check_flag(self.keepdims, "keepdims", type(self).__name__)
        return getattr(F, self._op)(x, data_format=self.data_format, keepdims=keepdims)


class GlobalAveragePooling1D(_GlobalPool):
    """Mean over the width axis: ``(N, W, C) -> (N, C)``."""

    _rank, _op = 1, "global_avg_pool"


class GlobalAveragePooling2D(_GlobalPool):
    """Mean over height and width: ``(N, H, W, C) -> (N, C)`` (the ResNet head)."""

    _rank, _op = 2, "global_avg_pool"


class GlobalAveragePooling3D(_GlobalPool):
    """Mean over depth, height and width: ``(N, D, H, W, C) -> (N, C)``."""

    _rank, _op = 3, "global_avg_pool"


class GlobalMaxPooling1D(_GlobalPool):
    """Max over the width axis: ``(N, W, C) -> (N, C)``."""

    _rank, _op = 1, "global_max_pool"


class GlobalMaxPooling2D(_GlobalPool):
    """Max over height and width: ``(N, H, W, C) -> (N, C)``."""

    _rank, _op = 2, "global_max_pool"


class GlobalMaxPooling3D(_GlobalPool):
    """Max over depth, height and width: ``(N, D, H, W, C) -> (N, C)``."""

    _rank, _op = 3, "global_max_pool"


class ChannelMaxPool(nn.Module):
    """Depth-wise max pooling: the max over groups of ``pool_size`` adjacent channels, spatial axes kept.

    ``C2 = (C - pool_size) // strides + 1`` (``strides=None`` means ``pool_size``); TensorFlow's
    ``tf.nn.max_pool(x, ksize=(1, 1, 1, k), strides=(1, 1, 1, k), padding="VALID")``, which Keras has no layer for.
    Works for any number of spatial axes.
    """

    pool_size: int = 2
    strides: Optional[int] = None
    data_format: str = "channels_last"

    def __call__(self, x):
        return F.channel_max_pool(x, self.pool_size, self.strides, data_format=self.data_format)


MaxPool1D, MaxPool2D, MaxPool3D = MaxPooling1D, MaxPooling2D, MaxPooling3D
AvgPool1D, AvgPool2D, AvgPool3D = AveragePooling1D, AveragePooling2D, AveragePooling3D
MinPool1D, MinPool2D, MinPool3D = MinPooling1D, MinPooling2D, MinPooling3D
GlobalAvgPool1D, GlobalAvgPool2D, GlobalAvgPool3D = (GlobalAveragePooling1D, GlobalAveragePooling2D,
                                                     GlobalAveragePooling3D)
GlobalMaxPool1D, GlobalMaxPool2D, GlobalMaxPool3D = GlobalMaxPooling1D, GlobalMaxPooling2D, GlobalMaxPooling3D
