"""NNX twins of zoo models: the lecture's Keras models (:class:`SimpleCNN` and its presets) and LeNet-5.

Each is the linen zoo model (:mod:`cnnjax.models`) layer for layer, with the same parameter counts and the same
variable names: layers are attributes named as linen's compact modules name them (``Conv2D_0``,
``MaxPooling2D_0``, ``Dense_1``, ...), so ``cnnjax.nnx.linen_variables(model)`` has the linen model's tree and
``cnnjax.nnx.update`` takes the linen model's variables (the initial values differ: NNX draws them from
``rngs``). NNX builds eagerly, so a model takes its ``input_shape`` (``(height, width, channels)``, the registry's
by default), from which :mod:`cnnjax.shapes` gives every layer's input size. Models return float32 logits
(``softmax=True``: probabilities) and take ``train`` (None: the mode ``model.train()``/``model.eval()`` set).

>>> model = cnnjax.nnx.models.get("mnist_cnn", rngs=nnx.Rngs(0))
>>> logits = model(images)          # (N, 10)
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import jax.numpy as jnp
from flax import nnx

from cnnjax import models as linen_models
from cnnjax import shapes
from cnnjax.nnx._common import as_rngs
from cnnjax.nnx._route import routed
from cnnjax.nnx.layers import AveragePooling2D, Conv2D, Dense, Dropout, Flatten, MaxPooling2D

__all__ = ["SimpleCNN", "LeNet5", "mnist_cnn", "mnist_cnn2", "cifar10_cnn", "fashion_dnn", "fashion_cnn", "get",
           "names"]

_POOLS = {"max": MaxPooling2D, "avg": AveragePooling2D}


def _input_shape(value, model: str) -> Tuple[int, int, int]:
    if (not isinstance(value, (tuple, list)) or len(value) != 3
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in value)):
        raise ValueError(f"{model}: input_shape={value!r} must be (height, width, channels), three positive ints, "
                         f"without the batch axis, e.g. (28, 28, 1).")
    return tuple(value)


class _Stack(nnx.Module):
    """Layers called in order (``order``), each an attribute named ``<class>_<count>`` as linen's compact modules
    name them."""

    order: Tuple[str, ...] = ()

    def _add(self, layer):
        kind = type(layer).__name__
        name = f"{kind}_{sum(n.rsplit('_', 1)[0] == kind for n in self.order)}"
        setattr(self, name, layer)
        self.order = (*self.order, name)

    @routed
    def __call__(self, x, train: Optional[bool] = None):
        for name in self.order:
            layer = getattr(self, name)
            x = layer(x, train=train) if isinstance(layer, Dropout) else layer(x)
        return jnp.asarray(x, jnp.float32)


class SimpleCNN(_Stack):
    """Conv blocks, Flatten, Dense layers: :class:`cnnjax.models.SimpleCNN` in NNX, argument for argument, plus
    ``input_shape`` and ``rngs`` (an ``nnx.Rngs`` or an int seed).

    Layers: per entry of ``conv_filters`` a ``Conv2D(filters, kernel_size, strides, padding, activation)`` and the
    pooling of ``pools`` (``"max"``, ``"avg"`` or None); a ``Dropout(conv_dropout)`` if > 0; ``Flatten``; per
    entry of ``dense_units`` a ``Dense(units, activation)`` (and ``Dropout(dense_dropout)`` if > 0); ``Dense``
    to ``num_classes``.
    """

    def __init__(self, input_shape: Sequence[int] = (28, 28, 1), conv_filters: Sequence[int] = (32,),
                 pools: Sequence[Optional[str]] = ("max",), kernel_size: Union[int, Sequence[int]] = 3,
                 strides: Union[int, Sequence[int]] = 1, padding: Any = "valid",
                 pool_size: Union[int, Sequence[int]] = 2, activation: Union[str, Callable] = "relu",
                 conv_dropout: float = 0.0, dense_units: Sequence[int] = (128,), dense_dropout: float = 0.0,
                 num_classes: int = 10, softmax: bool = False, dtype: Any = None, param_dtype: Any = jnp.float32,
                 *, rngs: nnx.Rngs | int):
        name = type(self).__name__
        if len(pools) != len(conv_filters):
            raise ValueError(f"{name}: pools={tuple(pools)!r} needs one entry per conv layer "
                             f"(conv_filters={tuple(conv_filters)!r}); use 'max', 'avg' or None for each.")
        for pool in pools:
            if pool is not None and pool not in _POOLS:
                raise ValueError(f"{name}: unknown pool {pool!r} in pools; use 'max', 'avg' or None.")
        self.softmax = shapes.check_flag(softmax, "softmax", name)
        rngs = as_rngs(rngs, name)
        dtypes = dict(dtype=dtype, param_dtype=param_dtype)
        shape = (1, *_input_shape(input_shape, name))       # one example's shape after each layer
        for filters, pool in zip(conv_filters, pools):
            conv = Conv2D(shape[-1], filters, kernel_size, strides=strides, padding=padding,
                          activation=activation, rngs=rngs, **dtypes)
            self._add(conv)
            shape = shapes.conv_output_shape(shape, conv.kernel.shape, strides, padding)
            if pool is not None:
                self._add(_POOLS[pool](pool_size))
                shape = shapes.pool_output_shape(shape, pool_size)
        if conv_dropout:
            self._add(Dropout(conv_dropout, rngs=rngs))
        self._add(Flatten())
        features = math.prod(shape[1:])
        for units in dense_units:
            self._add(Dense(features, units, activation=activation, rngs=rngs, **dtypes))
            features = units
            if dense_dropout:
                self._add(Dropout(dense_dropout, rngs=rngs))
        self._add(Dense(features, num_classes, activation="softmax" if self.softmax else None, rngs=rngs, **dtypes))


def _twin(name: str):
    """The NNX twin of the linen zoo's lecture model `name`: the linen partial's settings (their one home) and the
    registry's input shape, which NNX needs to build."""
    linen = getattr(linen_models.lecture, name)
    twin = functools.partial(SimpleCNN, input_shape=linen_models.input_shape(name), **linen.keywords)
    twin.__doc__ = linen.__doc__
    return twin


mnist_cnn, mnist_cnn2, cifar10_cnn, fashion_dnn, fashion_cnn = (
    _twin(name) for name in ("mnist_cnn", "mnist_cnn2", "cifar10_cnn", "fashion_dnn", "fashion_cnn"))


class LeNet5(_Stack):
    """LeNet-5 as :class:`cnnjax.models.LeNet5` (see there for the paper's differences): Conv2D(6, 5x5,
    padding=input_padding, tanh) → AveragePooling2D → Conv2D(16, 5x5, tanh) → AveragePooling2D → Conv2D(120, 5x5,
    tanh) → Flatten → Dense(84, tanh) → Dense(num_classes). 61,706 params on 28x28x1."""

    def __init__(self, input_shape: Sequence[int] = (28, 28, 1), num_classes: int = 10,
                 activation: Union[str, Callable] = "tanh", input_padding: int = 2, softmax: bool = False,
                 dtype: Any = None, param_dtype: Any = jnp.float32, *, rngs: nnx.Rngs | int):
        name = type(self).__name__
        self.softmax = shapes.check_flag(softmax, "softmax", name)
        rngs = as_rngs(rngs, name)
        kw = dict(activation=activation, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        shape = (1, *_input_shape(input_shape, name))
        for filters, padding in ((6, input_padding), (16, "valid"), (120, "valid")):
            conv = Conv2D(shape[-1], filters, 5, padding=padding, **kw)
            self._add(conv)
            shape = shapes.conv_output_shape(shape, conv.kernel.shape, 1, padding)
            if filters != 120:
                self._add(AveragePooling2D(2))
                shape = shapes.pool_output_shape(shape, 2)
        self._add(Flatten())
        self._add(Dense(math.prod(shape[1:]), 84, **kw))
        self._add(Dense(84, num_classes, activation="softmax" if self.softmax else None, dtype=dtype,
                        param_dtype=param_dtype, rngs=rngs))


_BUILDERS: Dict[str, Callable[..., nnx.Module]] = {
    "mnist_cnn": mnist_cnn, "mnist_cnn2": mnist_cnn2, "cifar10_cnn": cifar10_cnn, "fashion_dnn": fashion_dnn,
    "fashion_cnn": fashion_cnn, "lenet5": LeNet5,
}


def names() -> list:
    """The zoo models that have an NNX twin, sorted."""
    return sorted(_BUILDERS)


def get(name: str, *, rngs: nnx.Rngs | int = 0, **kwargs: Any) -> nnx.Module:
    """The NNX twin of the zoo model ``name`` (:func:`names`), at the registry's input shape unless
    ``input_shape=`` is given; ``kwargs`` as for the linen model. ValueError for a model without an NNX twin."""
    if name not in _BUILDERS:
        raise ValueError(f"nnx.models.get: no NNX twin of model name={name!r}; use one of {', '.join(names())} "
                         "(or cnnjax.models.get for the linen zoo).")
    kwargs.setdefault("input_shape", linen_models.input_shape(name))
    return _BUILDERS[name](rngs=rngs, **kwargs)
