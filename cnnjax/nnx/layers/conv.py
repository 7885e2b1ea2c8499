"""Convolution layers in Flax NNX over :func:`cnnjax.functional.conv1d` / ``conv2d`` / ``conv3d``.

The linen layers' Keras defaults (``padding="valid"``, ``strides=1``, glorot-uniform kernels, zero biases); as NNX
modules are built eagerly, the number of input channels comes first: ``Conv2D(in_channels, filters,
kernel_size, rngs=nnx.Rngs(0))``. The kernel is ``(*kernel_size, in_channels // groups, filters)`` (HWIO in 2-D)
and the bias ``(filters,)``: ``prod(kernel_size) * (in_channels / groups) * filters + filters`` parameters (the
lecture's ``K*F*F*D + K``), the names and shapes of :class:`cnnjax.layers.Conv2D`.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Union

import jax.numpy as jnp
from flax import nnx

from cnnjax import _args, shapes
from cnnjax import functional as F
from cnnjax import layers as linen_layers
from cnnjax.nnx._common import activation_fn, as_rngs, cast, check_input, frozen, value
from cnnjax.nnx._route import routed

IntOrTuple = Union[int, Sequence[int]]

__all__ = ["Conv1D", "Conv2D", "Conv3D"]


class _Conv(nnx.Module):
    """N-D convolution; subclasses fix the number of spatial axes (``_rank``) and the functional op (``_op``)."""

    _rank = 2
    _op = "conv2d"
    linen_twin = linen_layers.Conv2D

    def __init__(self, in_channels: int, filters: int, kernel_size: IntOrTuple, strides: IntOrTuple = 1,
                 padding: Any = "valid", activation: Optional[Union[str, Callable]] = None, use_bias: bool = True,
                 dilation_rate: IntOrTuple = 1, groups: int = 1, data_format: str = "channels_last",
                 kernel_init: Callable = nnx.initializers.glorot_uniform(),
                 bias_init: Callable = nnx.initializers.zeros_init(), dtype: Any = None,
                 param_dtype: Any = jnp.float32, *, rngs: nnx.Rngs | int):
        layer = type(self).__name__
        in_channels = _args.check_int(in_channels, "in_channels", layer)
        self.filters = _args.check_int(filters, "filters", layer)
        self.groups = _args.check_int(groups, "groups", layer)
        self.kernel_size = _args.as_int_tuple(kernel_size, self._rank, "kernel_size", layer)
        self.strides = _args.as_int_tuple(strides, self._rank, "strides", layer)
        self.dilation_rate = _args.as_int_tuple(dilation_rate, self._rank, "dilation_rate", layer)
        _args.padding(padding, self._rank, layer)
        self.padding = frozen(padding)
        self.data_format = _args.data_format(data_format, self._rank, layer)
        self.activation = activation
        self._act = activation_fn(activation, layer)
        self.use_bias = shapes.check_flag(use_bias, "use_bias", layer)
        self.dtype, self.param_dtype = dtype, param_dtype
        if in_channels % self.groups or self.filters % self.groups:
            raise ValueError(f"{layer}: groups={self.groups} must divide both in_channels={in_channels} and "
                             f"filters={self.filters}.")
        self.in_channels = in_channels
        rngs = as_rngs(rngs, layer)
        shape = (*self.kernel_size, in_channels // self.groups, self.filters)
        self.kernel = nnx.Param(kernel_init(rngs.params(), shape, param_dtype))
        self.bias = nnx.Param(bias_init(rngs.params(), (self.filters,), param_dtype)) if self.use_bias else None

    @routed
    def __call__(self, x):
        layer = type(self).__name__
        axis = _args.channel_axis(self.data_format, self._rank + 2)
        check_input(x, self._rank, layer, self.data_format, axis, self.in_channels, "channels")
        x, kernel, bias = cast(x, value(self.kernel), value(self.bias), dtype=self.dtype, layer=layer)
        y = getattr(F, self._op)(x, kernel, bias, strides=self.strides, padding=self.padding,
                                 dilation=self.dilation_rate, groups=self.groups, data_format=self.data_format)
        return self._act(y)


class Conv1D(_Conv):
    """1-D convolution over ``(batch, width, channels)``; kernel ``(k, in_channels // groups, filters)``."""

    _rank, _op, linen_twin = 1, "conv1d", linen_layers.Conv1D


class Conv2D(_Conv):
    """2-D convolution over ``(batch, height, width, channels)`` (NCHW with ``data_format="channels_first"``);
    kernel ``(kh, kw, in_channels // groups, filters)``.

    >>> Conv2D(1, 32, 3, activation="relu", rngs=nnx.Rngs(0))   # 28x28x1 -> 26x26x32, 3*3*1*32 + 32 = 320
    """

    _rank, _op, linen_twin = 2, "conv2d", linen_layers.Conv2D


class Conv3D(_Conv):
    """3-D convolution over ``(batch, depth, height, width, channels)``; kernel ``(kd, kh, kw, C // groups, K)``."""

    _rank, _op, linen_twin = 3, "conv3d", linen_layers.Conv3D
