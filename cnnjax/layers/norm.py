"""Batch normalisation: a Keras-style Flax wrapper of :func:`cnnjax.functional.batch_norm`."""
from __future__ import annotations

import math
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from cnnjax import _args, shapes
from cnnjax import functional as F

Initializer = Callable[..., Any]

__all__ = ["BatchNormalization", "BatchNorm"]


class BatchNormalization(nn.Module):
    """``y = scale * (x - mean) / sqrt(var + epsilon) + bias``, per channel along ``axis``.

    ``train=True``: ``mean`` and ``var`` are the batch's (over every axis but ``axis``), and the running
    statistics in the ``"batch_stats"`` collection move towards them,
    ``running = momentum * running + (1 - momentum) * batch``; call ``apply(..., train=True,
    mutable=["batch_stats"])``. ``train=False``: the running statistics are used (``use_running_average = not
    train``). Keras defaults: ``momentum=0.99``, ``epsilon=1e-3``.

    Variables for ``C`` channels: params ``scale`` (ones) and ``bias`` (zeros), trainable; batch_stats ``mean``
    (zeros) and ``var`` (ones), non-trainable: ``4 * C`` in all, of which ``2 * C`` are trainable. Statistics and
    the normalisation are computed in at least float32, whatever the computation dtype ``dtype``, which is the
    output's (``None``: the input's promoted with ``param_dtype``).

    ``train``, ``center`` and ``scale`` take a bool only (TypeError otherwise: the string ``'False'`` is truthy).
    An empty batch passes with ``train=False``; with ``train=True`` it raises ValueError (no statistics).
    """

    axis: int = -1
    momentum: float = 0.99
    epsilon: float = 1e-3
    center: bool = True
    scale: bool = True
    scale_init: Initializer = nn.initializers.ones_init()
    bias_init: Initializer = nn.initializers.zeros_init()
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        layer = type(self).__name__
        train = shapes.check_flag(train, "train", layer)           # a string 'False' would mean True
        center = shapes.check_flag(self.center, "center", layer)
        use_scale = shapes.check_flag(self.scale, "scale", layer)
        ndim = jnp.ndim(x)
        if not isinstance(self.axis, int) or not -ndim <= self.axis < ndim or ndim < 2:
            raise ValueError(
                f"{layer}: axis={self.axis!r} is not an axis of the input of shape {tuple(jnp.shape(x))}; "
                f"use the channel axis (-1 for channels_last, 1 for channels_first).")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"{layer}: momentum={self.momentum!r} must lie in [0, 1), e.g. 0.99 (Keras) or 0.9.")
        if (isinstance(self.epsilon, bool) or not isinstance(self.epsilon, (int, float, np.integer, np.floating))
                or not 0.0 < self.epsilon < math.inf):
            raise ValueError(f"{layer}: epsilon={self.epsilon!r} must be a finite number > 0 (it keeps "
                             "sqrt(var + epsilon) away from 0), e.g. 1e-3 (Keras) or 1e-5.")
        axis = self.axis % ndim
        channels = jnp.shape(x)[axis]
        stat_dtype = jnp.promote_types(jnp.result_type(x), jnp.float32)
        out_dtype = self.dtype if self.dtype is not None else jnp.promote_types(jnp.result_type(x),
                                                                                self.param_dtype)
        if jnp.issubdtype(jnp.result_type(x), jnp.floating):
            # All of it in float32 at least, output cast at the end. In bfloat16 the terms of the gradient
            # (through x directly, through the mean and through the variance) are large and cancel; summed in
            # bfloat16 they did not, and the gradients grew ~1000x per layer (the speedrun diverged).
            x = x.astype(stat_dtype)
        running_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((channels,), stat_dtype))
        running_var = self.variable("batch_stats", "var", lambda: jnp.ones((channels,), stat_dtype))
        scale = self.param("scale", self.scale_init, (channels,), self.param_dtype) if use_scale else None
        bias = self.param("bias", self.bias_init, (channels,), self.param_dtype) if center else None
        if train and any(_args.surely(lambda i=i: jnp.shape(x)[i] == 0) for i in range(ndim) if i != axis):
            raise ValueError(
                f"{layer}: train=True on an input of shape {tuple(jnp.shape(x))} with no elements per channel; an "
                f"empty batch has no statistics (the running ones would become NaN). Use train=False for it.")
        if train:
            reduce_axes = tuple(i for i in range(ndim) if i != axis)
            mean, var = F.batch_moments(x, reduce_axes)
            if not self.is_initializing():
                running_mean.value = self.momentum * running_mean.value + (1.0 - self.momentum) * mean
                running_var.value = self.momentum * running_var.value + (1.0 - self.momentum) * var
        else:
            mean, var = running_mean.value, running_var.value
        y = F.batch_norm(x, mean, var, scale, bias, epsilon=self.epsilon, axis=axis)
        return y.astype(out_dtype)


BatchNorm = BatchNormalization
