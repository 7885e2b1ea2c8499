"""LeNet-5 (LeCun, Bottou, Bengio, Haffner 1998, "Gradient-based learning applied to document recognition")."""
from __future__ import annotations

from typing import Any, Callable, Union

import flax.linen as nn
import jax.numpy as jnp

from cnnjax.layers import AveragePooling2D, Conv2D, Dense, Flatten

__all__ = ["LeNet5"]


class LeNet5(nn.Module):
    """LeNet-5 on 28x28x1 MNIST digits, as close to the paper as these layers allow.

    ======  ==========================================  =============  ========================
    layer   here                                        output         params (paper)
    ======  ==========================================  =============  ========================
    C1      Conv2D(6, 5x5, padding=2, tanh)             28x28x6        156 (156)
    S2      AveragePooling2D(2)                         14x14x6        0 (12)
    C3      Conv2D(16, 5x5, tanh)                       10x10x16       2,416 (1,516)
    S4      AveragePooling2D(2)                         5x5x16         0 (32)
    C5      Conv2D(120, 5x5, tanh)                      1x1x120        48,120 (48,120)
    F6      Dense(84, tanh)                             84             10,164 (10,164)
    output  Dense(10)                                   10             850 (RBF units, 840)
    ======  ==========================================  =============  ========================

    Total 61,706 params. Differences from the paper: the paper's 32x32 input is the 28x28 digit with a 2-pixel
    border, which ``input_padding=2`` on C1 reproduces (use ``input_padding=0`` for 32x32 inputs); its
    subsampling layers S2/S4 have a trainable coefficient and bias per map (here plain averages); its C3
    connects each map to a subset of S2's maps (here to all six); its squashing function is ``1.7159 *
    tanh(2/3 * a)`` (here ``tanh``, or any ``activation``); its output is Euclidean RBF units (here a ``Dense``
    giving logits; ``softmax=True`` for probabilities).
    """

    num_classes: int = 10
    activation: Union[str, Callable] = "tanh"
    input_padding: int = 2
    softmax: bool = False
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        kw = dict(activation=self.activation, dtype=self.dtype, param_dtype=self.param_dtype)
        x = Conv2D(6, 5, padding=self.input_padding, **kw)(x)          # C1
        x = AveragePooling2D(2)(x)                                      # S2
        x = Conv2D(16, 5, **kw)(x)                                      # C3
        x = AveragePooling2D(2)(x)                                      # S4
        x = Conv2D(120, 5, **kw)(x)                                     # C5
        x = Flatten()(x)
        x = Dense(84, **kw)(x)                                          # F6
        x = Dense(self.num_classes, activation="softmax" if self.softmax else None, dtype=self.dtype,
                  param_dtype=self.param_dtype)(x)
        return jnp.asarray(x, jnp.float32)
