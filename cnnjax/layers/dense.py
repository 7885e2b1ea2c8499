"""Dense, Flatten, Dropout and Activation: Keras-style Flax wrappers of :mod:`cnnjax.functional`."""
from __future__ import annotations

from typing import Any, Callable, Optional, Union

import flax.linen as nn
import jax.numpy as jnp

from cnnjax import _args, shapes
from cnnjax import functional as F
from cnnjax.layers._common import activation, cast, param

Initializer = Callable[..., Any]

__all__ = ["Dense", "Flatten", "Dropout", "Activation"]


class Dense(nn.Module):
    """Fully connected layer: ``y = activation(x @ kernel + bias)`` over the last axis of ``x``.

    ``x`` is ``(..., in_features)``, ``kernel`` ``(in_features, units)``, ``bias`` ``(units,)``; the output is
    ``(..., units)``. Parameters: ``in_features * units + units`` (5408 * 128 + 128 = 692,352 in the lecture).
    Keras defaults: glorot-uniform kernel, zero bias, no activation.
    """

    units: int
    activation: Optional[Union[str, Callable]] = None
    use_bias: bool = True
    kernel_init: Initializer = nn.initializers.glorot_uniform()
    bias_init: Initializer = nn.initializers.zeros_init()
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        layer = type(self).__name__
        act = activation(self.activation, layer)
        units = _args.check_int(self.units, "units", layer)
        if jnp.ndim(x) < 1:
            raise ValueError(f"{layer}: input is a scalar; it needs at least one (feature) axis.")
        kernel = param(self, "kernel", self.kernel_init, (jnp.shape(x)[-1], units), self.param_dtype, x, layer)
        use_bias = shapes.check_flag(self.use_bias, "use_bias", layer)
        bias = self.param("bias", self.bias_init, (units,), self.param_dtype) if use_bias else None
        x, kernel, bias = cast(x, kernel, bias, dtype=self.dtype, layer=layer)
        return act(F.dense(x, kernel, bias))


class Flatten(nn.Module):
    """``(N, d1, d2, ...) -> (N, d1 * d2 * ...)``: keeps the batch axis (13 * 13 * 32 = 5408 in the lecture)."""

    def __call__(self, x):
        return F.flatten(x)


class Dropout(nn.Module):
    """Zeroes each element with probability ``rate`` and scales the rest by ``1 / (1 - rate)`` (inverted dropout).

    Active only when called with ``train=True``; it then draws its key from the ``"dropout"`` rng stream
    (``model.apply(variables, x, train=True, rngs={"dropout": key})``). With ``train=False`` it is the identity.
    ``rate`` must lie in ``[0, 1)``; it is checked at ``init`` in either mode. ``train`` takes a bool only
    (TypeError otherwise: the string ``'False'`` is truthy and would switch dropout on).
    """

    rate: float

    def __call__(self, x, train: bool = False):
        train = shapes.check_flag(train, "train", type(self).__name__)
        rng = self.make_rng("dropout") if train else None
        return F.dropout(x, self.rate, rng=rng, deterministic=not train)


class Activation(nn.Module):
    """Applies an activation given by name (``"relu"``, ``"softmax"``, ...) or as a callable."""

    activation: Union[str, Callable]

    def __call__(self, x):
        return activation(self.activation, type(self).__name__)(x)
