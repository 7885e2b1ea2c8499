"""VGG-style networks (Simonyan & Zisserman 2014) for 32x32 images: blocks of 3x3 convs, each block then a 2x2 max
pool; one general :class:`VGG`, the named models are ``functools.partial``\\ s of it.

``vgg11`` / ``vgg13`` / ``vgg16`` / ``vgg19`` use the paper's configurations A, B, D and E with BatchNormalization
after every conv (the CIFAR form of e.g. kuangliu/pytorch-cifar): after five pools a 32x32 input is 1x1x512,
flattened into a single Dense(10). Convs before BatchNormalization have no bias (it would be cancelled by
the normalisation), so vgg11 has 9,228,362 trainable parameters (kuangliu's 9,231,114 less 2,752 conv biases).
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from cnnjax.layers import BatchNormalization, Conv2D, Dense, Dropout, Flatten, MaxPooling2D

__all__ = ["VGG", "vgg11", "vgg13", "vgg16", "vgg19"]


class VGG(nn.Module):
    """``blocks`` of ``Conv2D(f, 3x3, same)`` [+ BatchNormalization] + ReLU, a ``MaxPooling2D(2)`` after each
    block, then Flatten, hidden ``Dense(units, relu)`` layers (each with ``dropout``) and a Dense output.

    Attributes:
      blocks: filters of each conv, grouped by block, e.g. ``((64,), (128,), (256, 256), (512, 512), (512, 512))``.
      batch_norm: BatchNormalization after each conv (then the conv has no bias).
      dense_units: hidden dense layers before the output (the ImageNet VGG has (4096, 4096)).
      dropout: rate of a Dropout after each hidden dense layer (0: none).

    Input ``(batch, 32, 32, 3)`` for CIFAR; output ``(batch, num_classes)`` float32 logits.
    """

    blocks: Sequence[Sequence[int]] = ((64,), (128,), (256, 256), (512, 512), (512, 512))
    batch_norm: bool = True
    dense_units: Sequence[int] = ()
    dropout: float = 0.0
    num_classes: int = 10
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        if not self.blocks or any(not block for block in self.blocks):
            raise ValueError(
                f"VGG: blocks={self.blocks!r} must be a non-empty sequence of non-empty sequences of filters, "
                f"e.g. ((64,), (128,), (256, 256)).")
        dtypes = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        for block in self.blocks:
            for filters in block:
                x = Conv2D(filters, 3, padding="same", use_bias=not self.batch_norm,
                           kernel_init=nn.initializers.he_normal(), **dtypes)(x)
                if self.batch_norm:
                    x = BatchNormalization(momentum=self.bn_momentum, epsilon=self.bn_epsilon, **dtypes)(
                        x, train=train)
                x = nn.relu(x)
            x = MaxPooling2D(2)(x)
        x = Flatten()(x)
        for units in self.dense_units:
            x = Dense(units, activation="relu", **dtypes)(x)
            if self.dropout:
                x = Dropout(self.dropout)(x, train=train)
        x = Dense(self.num_classes, **dtypes)(x)
        return jnp.asarray(x, jnp.float32)


vgg11 = functools.partial(VGG, blocks=((64,), (128,), (256, 256), (512, 512), (512, 512)))
vgg13 = functools.partial(VGG, blocks=((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)))
vgg16 = functools.partial(VGG, blocks=((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)))
vgg19 = functools.partial(VGG, blocks=((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4))
