"""``Sequential``: a stack of layers, each fed the previous one's output, as in ``keras.Sequential``."""
from __future__ import annotations

import inspect
from typing import Callable, Sequence

import flax.linen as nn

from cnnjax import shapes

__all__ = ["Sequential"]


def takes_train(layer: Callable) -> bool:
    """Whether ``layer`` accepts a ``train`` keyword (Dropout, BatchNormalization, nested Sequentials, models)."""
    fn = layer.__call__ if isinstance(layer, nn.Module) else layer
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "train" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


class Sequential(nn.Module):
    """Calls ``layers`` in order; ``train`` goes to every layer that takes it (Dropout, BatchNormalization).

    >>> model = Sequential([Conv2D(32, 3, activation="relu"), MaxPooling2D(), Flatten(),
    ...                     Dense(128, activation="relu"), Dense(10)])
    >>> variables = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    >>> logits = model.apply(variables, images, train=False)

    Layers may also be plain functions (e.g. ``jax.nn.relu``). Parameters are named ``layers_0``, ``layers_1``,
    ... after each layer's position (Flax renames list members, so a ``name=`` given to a layer inside a
    ``Sequential`` is not kept; name layers in an ``nn.compact`` module instead).
    """

    layers: Sequence[Callable]

    def __call__(self, x, train: bool = False):
        train = shapes.check_flag(train, "train", "Sequential")
        if not isinstance(self.layers, (list, tuple)) or not self.layers:
            raise ValueError(f"Sequential: layers must be a non-empty list of layers, got {self.layers!r}.")
        for i, layer in enumerate(self.layers):
            if not callable(layer):
                raise TypeError(f"Sequential: layer {i} is {type(layer).__name__} {layer!r}, not a layer (a flax "
                                "Module or a callable).")
        for layer in self.layers:
            x = layer(x, train=train) if takes_train(layer) else layer(x)
        return x
