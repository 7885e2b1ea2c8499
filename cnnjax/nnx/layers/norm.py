"""Batch normalisation in Flax NNX over :func:`cnnjax.functional.batch_moments` and ``batch_norm``."""
from __future__ import annotations

import math
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cnnjax import _args, shapes
from cnnjax import functional as F
from cnnjax.nnx._common import value
from cnnjax.nnx._route import routed

__all__ = ["BatchNormalization", "BatchNorm"]


class BatchNormalization(nnx.Module):
    """``y = scale * (x - mean) / sqrt(var + epsilon) + bias`` per channel along ``axis``, as
    :class:`cnnjax.layers.BatchNormalization` computes it (Keras defaults ``momentum=0.99``, ``epsilon=1e-3``).

    In training (``train=True``, or ``train=None`` after ``model.train()``, which sets
    ``use_running_average=False``) ``mean`` and ``var`` are the batch's, over every axis but ``axis``, and the
    running statistics move towards them in place: ``running = momentum * running + (1 - momentum) * batch``. In
    inference (the default; ``model.eval()``) the running statistics are used.

    Variables for ``C = num_features`` channels: ``nnx.Param`` ``scale`` (ones) and ``bias`` (zeros), trainable;
    ``nnx.BatchStat`` ``mean`` (zeros) and ``var`` (ones), float32, non-trainable: ``4 * C`` in all. ``scale`` and
    ``center`` (the constructor's flags) are kept as ``use_scale`` and ``center``. Statistics and normalisation are
    computed in at least float32; the output has the dtype ``dtype`` (None: the input's promoted with
    ``param_dtype``).
    """

    def __init__(self, num_features: int, axis: int = -1, momentum: float = 0.99, epsilon: float = 1e-3,
                 center: bool = True, scale: bool = True, scale_init: Callable = nnx.initializers.ones_init(),
                 bias_init: Callable = nnx.initializers.zeros_init(), dtype: Any = None,
                 param_dtype: Any = jnp.float32, *, use_running_average: bool = True, rngs: Any = None):
        layer = type(self).__name__
        channels = _args.check_int(num_features, "num_features", layer)
        if not isinstance(axis, int) or isinstance(axis, bool):
            raise ValueError(f"{layer}: axis={axis!r} must be an int: the channel axis (-1 for channels_last, 1 for "
                             "channels_first).")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"{layer}: momentum={momentum!r} must lie in [0, 1), e.g. 0.99 (Keras) or 0.9.")
        if (isinstance(epsilon, bool) or not isinstance(epsilon, (int, float, np.integer, np.floating))
                or not 0.0 < epsilon < math.inf):
            raise ValueError(f"{layer}: epsilon={epsilon!r} must be a finite number > 0 (it keeps sqrt(var + "
                             "epsilon) away from 0), e.g. 1e-3 (Keras) or 1e-5.")
        self.num_features, self.axis, self.momentum, self.epsilon = channels, axis, momentum, epsilon
        self.center = shapes.check_flag(center, "center", layer)
        self.use_scale = shapes.check_flag(scale, "scale", layer)
        self.use_running_average = shapes.check_flag(use_running_average, "use_running_average", layer)
        self.dtype, self.param_dtype = dtype, param_dtype
        key = jax.random.key(0)         # ones/zeros initialisers ignore it
        self.mean = nnx.BatchStat(jnp.zeros((channels,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((channels,), jnp.float32))
        self.scale = nnx.Param(scale_init(key, (channels,), param_dtype)) if self.use_scale else None
        self.bias = nnx.Param(bias_init(key, (channels,), param_dtype)) if self.center else None

    @routed
    def __call__(self, x, train: Optional[bool] = None):
        layer = type(self).__name__
        train = (not self.use_running_average) if train is None else shapes.check_flag(train, "train", layer)
        ndim = jnp.ndim(x)
        if not -ndim <= self.axis < ndim or ndim < 2:
            raise ValueError(f"{layer}: axis={self.axis!r} is not an axis of the input of shape "
                             f"{tuple(jnp.shape(x))}; use the channel axis (-1 for channels_last, 1 for "
                             "channels_first).")
        axis = self.axis % ndim
        if _args.surely(lambda: jnp.shape(x)[axis] != self.num_features):
            raise ValueError(f"{layer}: input of shape {tuple(jnp.shape(x))} has {jnp.shape(x)[axis]} channels on "
                             f"axis {self.axis}, but this layer was built for num_features={self.num_features}.")
        out_dtype = self.dtype if self.dtype is not None else jnp.promote_types(jnp.result_type(x),
                                                                                self.param_dtype)
        if jnp.issubdtype(jnp.result_type(x), jnp.floating):
            x = x.astype(jnp.promote_types(jnp.result_type(x), jnp.float32))   # statistics in float32 at least
        if train and any(_args.surely(lambda i=i: jnp.shape(x)[i] == 0) for i in range(ndim) if i != axis):
            raise ValueError(f"{layer}: train=True on an input of shape {tuple(jnp.shape(x))} with no elements per "
                             "channel; an empty batch has no statistics (the running ones would become NaN). Use "
                             "train=False for it.")
        if train:
            mean, var = F.batch_moments(x, tuple(i for i in range(ndim) if i != axis))
            self.mean[...] = self.momentum * self.mean[...] + (1.0 - self.momentum) * mean
            self.var[...] = self.momentum * self.var[...] + (1.0 - self.momentum) * var
        else:
            mean, var = self.mean[...], self.var[...]
        y = F.batch_norm(x, mean, var, value(self.scale), value(self.bias), epsilon=self.epsilon, axis=axis)
        return y.astype(out_dtype)


BatchNorm = BatchNormalization
