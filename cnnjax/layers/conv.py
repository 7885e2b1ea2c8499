"""Convolution layers: Keras-style Flax wrappers of :func:`cnnjax.functional.conv` and ``conv_transpose``.

Keras defaults, not Flax's: ``padding="valid"``, ``strides=1``, glorot-uniform kernels, zero biases. Kernels are
stored as ``(*kernel_size, in_channels // groups, filters)`` (HWIO for 2-D, as in Keras and ``tf.nn.conv2d``),
whatever the data format. Per spatial axis, with ``k_eff = dilation * (k - 1) + 1``::

    valid:  out = (n - k_eff) // s + 1        same: out = ceil(n / s)        int p: out = (n + 2p - k_eff) // s + 1

Parameters: ``prod(kernel_size) * (in_channels / groups) * filters + filters`` (the lecture's ``K*F*F*D + K``).
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Union

import flax.linen as nn
import jax.numpy as jnp

from cnnjax import _args, shapes
from cnnjax import functional as F
from cnnjax.layers._common import activation, cast, check_rank, param

IntOrTuple = Union[int, Sequence[int]]
Initializer = Callable[..., Any]

__all__ = ["Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "Conv1DTranspose", "Conv2DTranspose",
           "Conv3DTranspose"]


def _use_bias(layer) -> bool:
    """The layer's ``use_bias`` as a bool; TypeError naming the layer for anything else (e.g. the string 'False')."""
    return shapes.check_flag(layer.use_bias, "use_bias", type(layer).__name__)


class _Conv(nn.Module):
    """N-D convolution; subclasses fix the number of spatial axes (``_rank``) and the functional op."""

    filters: int
    kernel_size: IntOrTuple
    strides: IntOrTuple = 1
    padding: Any = "valid"
    activation: Optional[Union[str, Callable]] = None
    use_bias: bool = True
    dilation_rate: IntOrTuple = 1
    groups: int = 1
    data_format: str = "channels_last"
    kernel_init: Initializer = nn.initializers.glorot_uniform()
    bias_init: Initializer = nn.initializers.zeros_init()
    dtype: Any = None
    param_dtype: Any = jnp.float32

    _rank = 2
    _op = "conv2d"

    def _kernel_shape(self, in_channels: int) -> tuple:
        """The stored kernel's shape for an input with ``in_channels`` channels."""
        layer = type(self).__name__
        filters = _args.check_int(self.filters, "filters", layer)
        groups = _args.check_int(self.groups, "groups", layer)
        ksize = _args.as_int_tuple(self.kernel_size, self._rank, "kernel_size", layer)
        if in_channels % groups or filters % groups:
            raise ValueError(
                f"{layer}: groups={groups} must divide both the {in_channels} input channels and "
                f"filters={filters}.")
        return (*ksize, in_channels // groups, filters)

    @nn.compact
    def __call__(self, x):
        layer = type(self).__name__
        act = activation(self.activation, layer)
        fmt = check_rank(x, self._rank, layer, self.data_format)
        in_channels = x.shape[_args.channel_axis(fmt, x.ndim)]
        shape = self._kernel_shape(in_channels)
        kernel = param(self, "kernel", self.kernel_init, shape, self.param_dtype, x, layer)
        bias = self.param("bias", self.bias_init, shape[-1:], self.param_dtype) if _use_bias(self) else None
        x, kernel, bias = cast(x, kernel, bias, dtype=self.dtype, layer=layer)
        y = getattr(F, self._op)(x, kernel, bias, strides=self.strides, padding=self.padding,
                                 dilation=self.dilation_rate, groups=self.groups, data_format=self.data_format)
        return act(y)


class Conv1D(_Conv):
    """1-D convolution over ``(batch, width, channels)``; kernel ``(k, in_channels // groups, filters)``."""

    _rank = 1
    _op = "conv1d"


class Conv2D(_Conv):
    """2-D convolution over ``(batch, height, width, channels)`` (NHWC; NCHW with
    ``data_format="channels_first"``); kernel ``(kh, kw, in_channels // groups, filters)``.

    >>> Conv2D(32, 3, activation="relu")   # 28x28x1 -> 26x26x32, 3*3*1*32 + 32 = 320 params
    """

    _rank = 2
    _op = "conv2d"


class Conv3D(_Conv):
    """3-D convolution over ``(batch, depth, height, width, channels)``; kernel ``(kd, kh, kw, C // groups, K)``."""

    _rank = 3
    _op = "conv3d"


class DepthwiseConv2D(nn.Module):
    """Depthwise 2-D convolution: each input channel convolved with its own ``depth_multiplier`` filters.

    It is :func:`cnnjax.functional.conv2d` with ``groups = in_channels``; the kernel is stored in the common
    layout ``(kh, kw, 1, in_channels * depth_multiplier)`` (Keras stores ``(kh, kw, in_channels,
    depth_multiplier)``: the same numbers, reshaped). Output channel ``c * depth_multiplier + m`` comes from input
    channel ``c``. Parameters: ``kh * kw * C * M + C * M``.
    """

    kernel_size: IntOrTuple
    strides: IntOrTuple = 1
    padding: Any = "valid"
    depth_multiplier: int = 1
    activation: Optional[Union[str, Callable]] = None
    use_bias: bool = True
    dilation_rate: IntOrTuple = 1
    data_format: str = "channels_last"
    kernel_init: Initializer = nn.initializers.glorot_uniform()
    bias_init: Initializer = nn.initializers.zeros_init()
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        layer = type(self).__name__
        act = activation(self.activation, layer)
        fmt = check_rank(x, 2, layer, self.data_format)
        in_channels = x.shape[_args.channel_axis(fmt, x.ndim)]
        multiplier = _args.check_int(self.depth_multiplier, "depth_multiplier", layer)
        ksize = _args.as_int_tuple(self.kernel_size, 2, "kernel_size", layer)
        filters = in_channels * multiplier
        kernel = param(self, "kernel", self.kernel_init, (*ksize, 1, filters), self.param_dtype, x, layer)
        bias = self.param("bias", self.bias_init, (filters,), self.param_dtype) if _use_bias(self) else None
        x, kernel, bias = cast(x, kernel, bias, dtype=self.dtype, layer=layer)
        y = F.conv2d(x, kernel, bias, strides=self.strides, padding=self.padding, dilation=self.dilation_rate,
                     groups=in_channels, data_format=self.data_format)
        return act(y)


class _ConvTranspose(nn.Module):
    """N-D transposed convolution (the gradient of conv with respect to its input; "deconvolution").

    Output size per axis (Keras): ``valid: n * s + max(k_eff - s, 0)``, ``same: n * s``. The kernel is stored as
    ``(*kernel_size, in_channels, filters)``, the layout of :func:`cnnjax.functional.conv_transpose`.
    Parameters: ``prod(kernel_size) * in_channels * filters + filters``.
    """

    filters: int
    kernel_size: IntOrTuple
    strides: IntOrTuple = 1
    padding: Any = "valid"
    activation: Optional[Union[str, Callable]] = None
    use_bias: bool = True
    dilation_rate: IntOrTuple = 1
    data_format: str = "channels_last"
    kernel_init: Initializer = nn.initializers.glorot_uniform()
    bias_init: Initializer = nn.initializers.zeros_init()
    dtype: Any = None
    param_dtype: Any = jnp.float32

    _rank = 2

    @nn.compact
    def __call__(self, x):
        layer = type(self).__name__
        act = activation(self.activation, layer)
        fmt = check_rank(x, self._rank, layer, self.data_format)
        in_channels = x.shape[_args.channel_axis(fmt, x.ndim)]
        filters = _args.check_int(self.filters, "filters", layer)
        ksize = _args.as_int_tuple(self.kernel_size, self._rank, "kernel_size", layer)
        kernel = param(self, "kernel", self.kernel_init, (*ksize, in_channels, filters), self.param_dtype, x, layer)
        bias = self.param("bias", self.bias_init, (filters,), self.param_dtype) if _use_bias(self) else None
        x, kernel, bias = cast(x, kernel, bias, dtype=self.dtype, layer=layer)
        y = F.conv_transpose(x, kernel, bias, strides=self.strides, padding=self.padding,
                             dilation=self.dilation_rate, data_format=self.data_format)
        return act(y)


class Conv1DTranspose(_ConvTranspose):
    """1-D transposed convolution; kernel ``(k, in_channels, filters)``."""

    _rank = 1


class Conv2DTranspose(_ConvTranspose):
    """2-D transposed convolution; kernel ``(kh, kw, in_channels, filters)``.

    >>> Conv2DTranspose(8, 3, strides=2)   # 7x7 -> 7*2 + max(3 - 2, 0) = 15 (valid)
    """

    _rank = 2


class Conv3DTranspose(_ConvTranspose):
    """3-D transposed convolution; kernel ``(kd, kh, kw, in_channels, filters)``."""

    _rank = 3
