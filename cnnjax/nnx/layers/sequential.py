"""``Sequential`` in Flax NNX: a stack of layers, each fed the previous one's output, as in ``keras.Sequential``."""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import flax.linen as nn
from flax import nnx

from cnnjax import shapes
from cnnjax.layers.sequential import takes_train
from cnnjax.nnx._route import routed

__all__ = ["Sequential"]


class Sequential(nnx.Module):
    """Calls ``layers`` in order; ``train`` goes to every layer that takes it (Dropout, BatchNormalization).

    >>> model = Sequential([Conv2D(1, 32, 3, activation="relu", rngs=rngs), MaxPooling2D(), Flatten(),
    ...                     Dense(5408, 128, activation="relu", rngs=rngs), Dense(128, 10, rngs=rngs)])
    >>> logits = model(images)                  # inference; model(images, train=True) trains

    Layer ``i`` is the attribute ``layers_i``, the name :class:`cnnjax.layers.Sequential` gives it, so the
    variables of both have the same paths (``layers_0/kernel``, ...). Layers may also be plain functions (e.g.
    ``jax.nn.relu``). ``train=None`` (the default) leaves each layer in its own mode (inference, unless
    ``model.train()``).
    """

    def __init__(self, layers: Sequence[Callable]):
        if not isinstance(layers, (list, tuple)) or not layers:
            raise ValueError(f"Sequential: layers must be a non-empty list of layers, got {layers!r}.")
        for i, layer in enumerate(layers):
            if isinstance(layer, nn.Module):
                raise TypeError(f"Sequential: layer {i} is the linen module {type(layer).__name__}; use the NNX "
                                "layers of cnnjax.nnx (or cnnjax.layers.Sequential for linen layers).")
            if not callable(layer):
                raise TypeError(f"Sequential: layer {i} is {type(layer).__name__} {layer!r}, not a layer (an NNX "
                                "Module or a callable).")
        self.count = len(layers)
        for i, layer in enumerate(layers):
            setattr(self, f"layers_{i}", layer)

    @property
    def layers(self) -> list:
        """The layers, in call order."""
        return [getattr(self, f"layers_{i}") for i in range(self.count)]

    @routed
    def __call__(self, x, train: Optional[bool] = None):
        if train is not None:
            train = shapes.check_flag(train, "train", "Sequential")
        for layer in self.layers:
            x = layer(x, train=train) if train is not None and takes_train(layer) else layer(x)
        return x
