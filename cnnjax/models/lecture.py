"""The Keras models of the CNN lecture notes this project grew from, built exactly, as variants of one model.

Every lecture model is conv blocks (each a ``Conv2D`` and an optional pooling), an optional ``Dropout``,
``Flatten``, hidden ``Dense`` layers (each optionally followed by ``Dropout``) and a ``Dense`` output:
:class:`SimpleCNN`. The named models are ``functools.partial``\\ s of it:

==============  ===========  ===================================================================  ==========
name            input        layers                                                               params
==============  ===========  ===================================================================  ==========
mnist_cnn       28x28x1      Conv2D(32,3,relu) MaxPool Flatten Dense(128,relu) Dense(10)          693,962
mnist_cnn2      28x28x1      Conv2D(32,3) MaxPool Conv2D(64,3) AvgPool Flatten Dense(64) Dense(10) 121,930
cifar10_cnn     32x32x3      Conv2D(32,3) MaxPool Dropout Flatten Dense(512) Dropout Dense(10)    3,692,938
fashion_dnn     28x28x1      Flatten Dense(128,relu) Dense(10)                                    101,770
fashion_cnn     28x28x1      3x Conv2D(32/64/64,3,relu), MaxPool after the first two, Flatten,
                             Dense(64,relu) Dense(10)                                             93,322
==============  ===========  ===================================================================  ==========

The models return **logits**: the notes' final ``softmax`` is folded into the loss
(:func:`cnnjax.functional.softmax_cross_entropy`), which is numerically better; parameter counts are unchanged.
``softmax=True`` gives the notes' output (probabilities) exactly. Logits are returned in float32 whatever the
computation ``dtype``. The notes' variants are keyword arguments, e.g. ``mnist_cnn(strides=2)`` or
``mnist_cnn(padding="same")``. Where the notes do not state an activation (``mnist_cnn2``, ``cifar10_cnn``) it is
ReLU; ``cifar10_cnn``'s dropout rates (0.25 after the conv block, 0.5 after the hidden dense layer) are those of
the usual Keras CIFAR-10 example, as the notes do not give them.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Optional, Sequence, Union

import flax.linen as nn
import jax.numpy as jnp

from cnnjax.layers import AveragePooling2D, Conv2D, Dense, Dropout, Flatten, MaxPooling2D

__all__ = ["SimpleCNN", "mnist_cnn", "mnist_cnn2", "cifar10_cnn", "fashion_dnn", "fashion_cnn"]

_POOLS = {"max": MaxPooling2D, "avg": AveragePooling2D}


class SimpleCNN(nn.Module):
    """Conv blocks, Flatten, Dense layers: the Keras ``Sequential`` models of the lecture notes.

    Attributes:
      conv_filters: filters of each ``Conv2D(filters, kernel_size, strides, padding, activation)``.
      pools: one entry per conv: ``"max"`` (``MaxPooling2D(pool_size)``), ``"avg"`` (``AveragePooling2D``) or
        None (no pooling after that conv).
      conv_dropout: rate of a ``Dropout`` after the conv blocks (0: none).
      dense_units: units of each hidden ``Dense(units, activation)``; ``dense_dropout`` after each (0: none).
      num_classes: units of the output ``Dense``; its output is returned as float32 logits (or probabilities
        with ``softmax=True``).
      dtype: computation dtype (e.g. ``jnp.bfloat16``); parameters are stored in ``param_dtype``.

    Input ``(batch, height, width, channels)``; call as ``model.apply(variables, x, train=False)``.
    """

    conv_filters: Sequence[int] = (32,)
    pools: Sequence[Optional[str]] = ("max",)
    kernel_size: Union[int, Sequence[int]] = 3
    strides: Union[int, Sequence[int]] = 1
    padding: Any = "valid"
    pool_size: Union[int, Sequence[int]] = 2
    activation: Union[str, Callable] = "relu"
    conv_dropout: float = 0.0
    dense_units: Sequence[int] = (128,)
    dense_dropout: float = 0.0
    num_classes: int = 10
    softmax: bool = False
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        self._check()
        dtypes = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        for filters, pool in zip(self.conv_filters, self.pools):
            x = Conv2D(filters, self.kernel_size, strides=self.strides, padding=self.padding,
                       activation=self.activation, **dtypes)(x)
            if pool is not None:
                x = _POOLS[pool](self.pool_size)(x)
        if self.conv_dropout:
            x = Dropout(self.conv_dropout)(x, train=train)
        x = Flatten()(x)
        for units in self.dense_units:
            x = Dense(units, activation=self.activation, **dtypes)(x)
            if self.dense_dropout:
                x = Dropout(self.dense_dropout)(x, train=train)
        x = Dense(self.num_classes, activation="softmax" if self.softmax else None, **dtypes)(x)
        return jnp.asarray(x, jnp.float32)

    def _check(self):
        name = type(self).__name__
        if len(self.pools) != len(self.conv_filters):
            raise ValueError(
                f"{name}: pools={tuple(self.pools)!r} needs one entry per conv layer "
                f"(conv_filters={tuple(self.conv_filters)!r}); use 'max', 'avg' or None for each.")
        for pool in self.pools:
            if pool is not None and pool not in _POOLS:
                raise ValueError(f"{name}: unknown pool {pool!r} in pools; use 'max', 'avg' or None.")


mnist_cnn = functools.partial(SimpleCNN, conv_filters=(32,), pools=("max",), dense_units=(128,))
mnist_cnn.__doc__ = """MNIST example 1 (28x28x1): Conv2D(32, 3x3, relu) → MaxPooling2D → Flatten → Dense(128, relu)
→ Dense(10). 693,962 params. Variants: ``strides=2``, ``padding="same"``."""

mnist_cnn2 = functools.partial(SimpleCNN, conv_filters=(32, 64), pools=("max", "avg"), dense_units=(64,))
mnist_cnn2.__doc__ = """MNIST example 2 (28x28x1): Conv2D(32, 3x3) → MaxPooling2D → Conv2D(64, 3x3) →
AveragePooling2D → Flatten → Dense(64) → Dense(10). 121,930 params."""

cifar10_cnn = functools.partial(SimpleCNN, conv_filters=(32,), pools=("max",), conv_dropout=0.25,
                                dense_units=(512,), dense_dropout=0.5)
cifar10_cnn.__doc__ = """CIFAR-10 simple CNN (32x32x3): Conv2D(32, 3x3) → MaxPooling2D → Dropout(0.25) → Flatten →
Dense(512) → Dropout(0.5) → Dense(10). 3,692,938 params."""

fashion_dnn = functools.partial(SimpleCNN, conv_filters=(), pools=(), dense_units=(128,))
fashion_dnn.__doc__ = """Fashion-MNIST DNN (28x28x1): Flatten → Dense(128, relu) → Dense(10). 101,770 params."""

fashion_cnn = functools.partial(SimpleCNN, conv_filters=(32, 64, 64), pools=("max", "max", None),
                                dense_units=(64,))
fashion_cnn.__doc__ = """Fashion-MNIST CNN (28x28x1): Conv2D(32) → MaxPooling2D → Conv2D(64) → MaxPooling2D →
Conv2D(64) → Flatten → Dense(64, relu) → Dense(10), all convs 3x3 relu. 93,322 params."""
