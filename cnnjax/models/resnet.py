"""ResNets for 32x32 images (He, Zhang, Ren, Sun 2016, "Deep residual learning for image recognition", sec. 4.2).

One general :class:`ResNet`; the named models are ``functools.partial``\\ s of it:

* ``resnet20`` / ``resnet32`` / ``resnet44`` / ``resnet56`` / ``resnet110``: the paper's CIFAR-10 networks,
  depth ``6n + 2``: a 3x3 conv with 16 filters, three stages of ``n`` basic blocks with 16, 32 and 64 filters
  (the first block of stages 2 and 3 has stride 2), global average pooling and a 10-way dense layer. Shortcuts
  are the paper's option A (identity; when the shape changes, subsample by 2 and pad the new channels with
  zeros), so they add no parameters: resnet20 has 269,722 trainable parameters (the paper's "0.27M").
* ``resnet18``: the width variant common for CIFAR (e.g. kuangliu/pytorch-cifar): the ImageNet ResNet-18's four
  stages of two basic blocks with 64, 128, 256 and 512 filters, but a 3x3 stride-1 stem and no max pooling, and
  1x1 projection shortcuts (option B): 11,173,962 trainable parameters.

Convolutions are 3x3 ``same`` without bias, each followed by ``BatchNormalization`` (momentum 0.9, epsilon 1e-5,
the values of the common CIFAR recipes, rather than Keras' 0.99 / 1e-3) and ReLU; kernels are He-normal.
Batch statistics live in the ``"batch_stats"`` collection (``mutable=["batch_stats"]`` when ``train=True``)
and count as non-trainable parameters. Returns float32 logits.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from cnnjax.layers import BatchNormalization, Conv2D, Dense, GlobalAveragePooling2D

__all__ = ["ResidualBlock", "ResNet", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet18"]

_SHORTCUTS = ("identity", "projection")


class ResidualBlock(nn.Module):
    """The basic block: ``relu(bn(conv3x3(relu(bn(conv3x3(x))))) + shortcut(x))``.

    ``shortcut``: when ``strides > 1`` or the channels change, ``"identity"`` subsamples ``x`` by ``strides`` and
    zero-pads its channels (no parameters; the paper's option A), ``"projection"`` uses a 1x1 conv with stride and
    BatchNormalization (option B). Otherwise the shortcut is ``x``. Input and output are NHWC.
    """

    filters: int
    strides: int = 1
    shortcut: str = "identity"
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        conv = functools.partial(Conv2D, padding="same", use_bias=False, kernel_init=nn.initializers.he_normal(),
                                 dtype=self.dtype, param_dtype=self.param_dtype)
        norm = functools.partial(BatchNormalization, momentum=self.bn_momentum, epsilon=self.bn_epsilon,
                                 dtype=self.dtype, param_dtype=self.param_dtype)
        y = nn.relu(norm()(conv(self.filters, 3, strides=self.strides)(x), train=train))
        y = norm()(conv(self.filters, 3)(y), train=train)
        if self.strides == 1 and x.shape[-1] == self.filters:
            return nn.relu(y + x)
        if self.shortcut == "projection":
            shortcut = norm()(conv(self.filters, 1, strides=self.strides)(x), train=train)
        else:
            shortcut = x[:, ::self.strides, ::self.strides, :]
            extra = self.filters - x.shape[-1]
            if extra < 0:
                raise ValueError(
                    f"ResidualBlock: the identity shortcut cannot reduce {x.shape[-1]} channels to "
                    f"filters={self.filters}; use shortcut='projection'.")
            shortcut = jnp.pad(shortcut, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
        return nn.relu(y + jnp.asarray(shortcut, y.dtype))


class ResNet(nn.Module):
    """A ResNet of basic blocks for small images: stem conv, stages of :class:`ResidualBlock`, global average
    pooling, Dense logits.

    Attributes:
      stage_sizes: blocks per stage, e.g. ``(3, 3, 3)`` for resnet20.
      widths: filters per stage (the stem has ``widths[0]``); every stage after the first halves the spatial
        size in its first block.
      shortcut: ``"identity"`` (option A, parameter-free) or ``"projection"`` (option B, 1x1 conv + BN).
      dtype: computation dtype (e.g. ``jnp.bfloat16``); parameters in ``param_dtype``.

    Input ``(batch, 32, 32, 3)`` for CIFAR (any size works); output ``(batch, num_classes)`` float32 logits.
    """

    stage_sizes: Sequence[int] = (3, 3, 3)
    widths: Sequence[int] = (16, 32, 64)
    shortcut: str = "identity"
    num_classes: int = 10
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        name = type(self).__name__
        if len(self.stage_sizes) != len(self.widths) or not self.stage_sizes:
            raise ValueError(
                f"{name}: stage_sizes={tuple(self.stage_sizes)!r} and widths={tuple(self.widths)!r} need one "
                f"entry per stage each, e.g. stage_sizes=(3, 3, 3), widths=(16, 32, 64).")
        if self.shortcut not in _SHORTCUTS:
            raise ValueError(f"{name}: unknown shortcut={self.shortcut!r}; use one of {_SHORTCUTS}.")
        if any(not isinstance(n, int) or n < 1 for n in self.stage_sizes):
            raise ValueError(f"{name}: stage_sizes={tuple(self.stage_sizes)!r} must be ints >= 1.")
        dtypes = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = Conv2D(self.widths[0], 3, padding="same", use_bias=False, kernel_init=nn.initializers.he_normal(),
                   **dtypes)(x)
        x = nn.relu(BatchNormalization(momentum=self.bn_momentum, epsilon=self.bn_epsilon, **dtypes)(
            x, train=train))
        for stage, (blocks, width) in enumerate(zip(self.stage_sizes, self.widths)):
            for block in range(blocks):
                strides = 2 if stage > 0 and block == 0 else 1
                x = ResidualBlock(width, strides, self.shortcut, self.bn_momentum, self.bn_epsilon,
                                  **dtypes)(x, train=train)
        x = GlobalAveragePooling2D()(x)
        x = Dense(self.num_classes, **dtypes)(x)
        return jnp.asarray(x, jnp.float32)


resnet20 = functools.partial(ResNet, stage_sizes=(3, 3, 3), widths=(16, 32, 64), shortcut="identity")
resnet32 = functools.partial(ResNet, stage_sizes=(5, 5, 5), widths=(16, 32, 64), shortcut="identity")
resnet44 = functools.partial(ResNet, stage_sizes=(7, 7, 7), widths=(16, 32, 64), shortcut="identity")
resnet56 = functools.partial(ResNet, stage_sizes=(9, 9, 9), widths=(16, 32, 64), shortcut="identity")
resnet110 = functools.partial(ResNet, stage_sizes=(18, 18, 18), widths=(16, 32, 64), shortcut="identity")
resnet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), widths=(64, 128, 256, 512), shortcut="projection")
