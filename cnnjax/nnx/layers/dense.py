"""Dense, Flatten, Dropout and Activation in Flax NNX over :mod:`cnnjax.functional`.

``Dense(in_features, units)``: ``y = activation(x @ kernel + bias)``, kernel ``(in_features, units)`` glorot-uniform,
bias ``(units,)`` zeros: ``in_features * units + units`` parameters, the names and shapes of
:class:`cnnjax.layers.Dense`.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Union

import jax
import jax.numpy as jnp
from flax import nnx

from cnnjax import _args, shapes
from cnnjax import functional as F
from cnnjax import layers as linen_layers
from cnnjax.nnx import _route
from cnnjax.nnx._common import activation_fn, as_rngs, cast, value
from cnnjax.nnx._route import routed

__all__ = ["Dense", "Flatten", "Dropout", "Activation"]


class Dense(nnx.Module):
    """Fully connected layer over the last axis: ``(..., in_features) -> (..., units)``.

    >>> Dense(5408, 128, activation="relu", rngs=nnx.Rngs(0))   # 5408 * 128 + 128 = 692,352 parameters
    """

    linen_twin = linen_layers.Dense

    def __init__(self, in_features: int, units: int, activation: Optional[Union[str, Callable]] = None,
                 use_bias: bool = True, kernel_init: Callable = nnx.initializers.glorot_uniform(),
                 bias_init: Callable = nnx.initializers.zeros_init(), dtype: Any = None,
                 param_dtype: Any = jnp.float32, *, rngs: nnx.Rngs | int):
        layer = type(self).__name__
        self.in_features = _args.check_int(in_features, "in_features", layer)
        self.units = _args.check_int(units, "units", layer)
        self.activation = activation
        self._act = activation_fn(activation, layer)
        self.use_bias = shapes.check_flag(use_bias, "use_bias", layer)
        self.dtype, self.param_dtype = dtype, param_dtype
        rngs = as_rngs(rngs, layer)
        self.kernel = nnx.Param(kernel_init(rngs.params(), (self.in_features, self.units), param_dtype))
        self.bias = nnx.Param(bias_init(rngs.params(), (self.units,), param_dtype)) if self.use_bias else None

    @routed
    def __call__(self, x):
        layer = type(self).__name__
        if jnp.ndim(x) < 1 or jnp.shape(x)[-1] != self.in_features:
            raise ValueError(f"{layer}: input of shape {tuple(jnp.shape(x))} has "
                             f"{jnp.shape(x)[-1] if jnp.ndim(x) else 0} features on its last axis, but this layer "
                             f"was built for in_features={self.in_features}; flatten the input first, or build the "
                             f"layer for its features.")
        x, kernel, bias = cast(x, value(self.kernel), value(self.bias), dtype=self.dtype, layer=layer)
        return self._act(F.dense(x, kernel, bias))


class Flatten(nnx.Module):
    """``(N, d1, d2, ...) -> (N, d1 * d2 * ...)``: keeps the batch axis (13 * 13 * 32 = 5408 in the lecture)."""

    linen_twin = linen_layers.Flatten

    @routed
    def __call__(self, x):
        return F.flatten(x)


class Dropout(nnx.Module):
    """Inverted dropout (:func:`cnnjax.functional.dropout`): zeroes each element with probability ``rate`` and
    scales the rest by ``1 / (1 - rate)``; the identity in inference.

    Training is on with ``train=True``, or with ``train=None`` after ``model.train()`` (which sets
    ``deterministic=False``; ``model.eval()`` sets it back). The default is inference, as for the linen layers.
    The key: the ``rngs`` given to the call (an ``nnx.Rngs``, an ``RngStream`` or a key), else the one
    :func:`cnnjax.nnx.as_linen`'s model gives (linen's ``"dropout"`` stream, so masks follow ``fit``'s seed),
    else the ``rngs`` given at construction (its ``"dropout"`` stream). ``rate`` must lie in ``[0, 1)``.
    """

    def __init__(self, rate: float, *, deterministic: bool = True, rngs: nnx.Rngs | int | None = None):
        layer = type(self).__name__
        F.dropout(jnp.zeros((1,), jnp.float32), rate, deterministic=True)       # checks rate: [0, 1), a number
        self.rate = rate
        self.deterministic = shapes.check_flag(deterministic, "deterministic", layer)
        self.rngs = nnx.data(None if rngs is None else as_rngs(rngs, layer)["dropout"].fork())

    @routed
    def __call__(self, x, train: Optional[bool] = None, rngs: Any = None):
        layer = type(self).__name__
        train = (not self.deterministic) if train is None else shapes.check_flag(train, "train", layer)
        if not train or self.rate == 0:
            return F.dropout(x, self.rate, deterministic=True)
        return F.dropout(x, self.rate, rng=self._key(rngs, layer), deterministic=False)

    def _key(self, rngs, layer):
        if rngs is not None:
            if isinstance(rngs, nnx.Rngs):
                return rngs["dropout"]()
            if isinstance(rngs, nnx.RngStream):
                return rngs()
            if isinstance(rngs, jax.Array):
                return rngs
            raise TypeError(f"{layer}: rngs must be an nnx.Rngs, an nnx.RngStream or a jax.random key, got "
                            f"{type(rngs).__name__}.")
        key = _route.dropout_key(layer)
        if key is not None:
            return key
        if self.rngs is None:
            raise ValueError(f"{layer}: training (train=True or model.train()) needs a key: build the layer with "
                             "rngs=nnx.Rngs(dropout=0) or call it with rngs=...")
        return self.rngs()


class Activation(nnx.Module):
    """Applies an activation given by name (``"relu"``, ``"softmax"``, ...) or as a callable."""

    linen_twin = linen_layers.Activation

    def __init__(self, activation: Union[str, Callable]):
        self.activation = activation
        self._act = activation_fn(activation, type(self).__name__)

    @routed
    def __call__(self, x):
        return self._act(x)
