"""Models by name: ``get("mnist_cnn", strides=2)``, ``names()``, and each model's input shape and dataset."""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Dict, List, Tuple

import flax.linen as nn

from cnnjax.models import airbench, lecture, lenet, resnet, vgg

__all__ = ["ModelInfo", "register", "get", "names", "info", "input_shape", "dataset"]


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """A registry entry: how to build the model and what it is for.

    ``params`` is the trainable parameter count at the default arguments and ``input_shape`` (tests hold it
    against ``shapes.conv_params`` / ``shapes.dense_params`` summed over the layers); ``source`` says where the
    architecture comes from.
    """

    name: str
    builder: Callable[..., nn.Module]
    input_shape: Tuple[int, int, int]
    dataset: str
    params: int
    source: str


_REGISTRY: Dict[str, ModelInfo] = {}


def register(name: str, builder: Callable[..., nn.Module], *, input_shape: Tuple[int, int, int], dataset: str,
             params: int, source: str) -> None:
    """Adds a model under ``name`` (ValueError if the name is taken)."""
    if name in _REGISTRY:
        raise ValueError(f"register: a model named {name!r} already exists.")
    _REGISTRY[name] = ModelInfo(name, builder, tuple(input_shape), dataset, params, source)


def info(name: str) -> ModelInfo:
    """The registry entry of ``name``; ValueError listing the names if there is none."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"models: unknown model name={name!r}; use one of {', '.join(names())}.")
    return _REGISTRY[name]


def _fields(builder) -> List[str]:
    cls = builder.func if isinstance(builder, functools.partial) else builder
    if dataclasses.is_dataclass(cls):
        return [f.name for f in dataclasses.fields(cls) if f.init and f.name not in ("parent",)]
    return []


def get(name: str, **kwargs: Any) -> nn.Module:
    """A new Module for the model ``name``, with ``kwargs`` overriding its defaults.

    >>> model = get("mnist_cnn", strides=2)
    >>> variables = model.init(jax.random.key(0), jnp.zeros((1, *input_shape("mnist_cnn"))))

    The module is left unnamed, so that it can be used inside other modules any number of times; pass
    ``name=`` to :func:`cnnjax.summary` to title its table.
    """
    entry = info(name)
    valid = _fields(entry.builder)
    unknown = [key for key in kwargs if valid and key not in valid]
    if unknown:
        raise TypeError(
            f"models.get: model {name!r} has no argument {unknown[0]!r}; its arguments are {', '.join(valid)}.")
    return entry.builder(**kwargs)


def names() -> List[str]:
    """The registered model names, sorted."""
    return sorted(_REGISTRY)


def input_shape(name: str) -> Tuple[int, int, int]:
    """The model's default input shape ``(height, width, channels)``, without the batch axis."""
    return info(name).input_shape


def dataset(name: str) -> str:
    """The dataset the model is meant for (a TFDS name: "mnist", "fashion_mnist", "cifar10")."""
    return info(name).dataset


_NOTES = "the CNN lecture notes' Keras models"
register("mnist_cnn", lecture.mnist_cnn, input_shape=(28, 28, 1), dataset="mnist", params=693_962, source=_NOTES)
register("mnist_cnn2", lecture.mnist_cnn2, input_shape=(28, 28, 1), dataset="mnist", params=121_930,
         source=_NOTES)
register("cifar10_cnn", lecture.cifar10_cnn, input_shape=(32, 32, 3), dataset="cifar10", params=3_692_938,
         source=_NOTES)
register("fashion_dnn", lecture.fashion_dnn, input_shape=(28, 28, 1), dataset="fashion_mnist", params=101_770,
         source=_NOTES)
register("fashion_cnn", lecture.fashion_cnn, input_shape=(28, 28, 1), dataset="fashion_mnist", params=93_322,
         source=_NOTES)
register("lenet5", lenet.LeNet5, input_shape=(28, 28, 1), dataset="mnist", params=61_706,
         source="LeCun et al. 1998, Gradient-based learning applied to document recognition")
_HE = "He et al. 2016, Deep residual learning for image recognition, sec. 4.2 (CIFAR-10)"
register("resnet20", resnet.resnet20, input_shape=(32, 32, 3), dataset="cifar10", params=269_722, source=_HE)
register("resnet32", resnet.resnet32, input_shape=(32, 32, 3), dataset="cifar10", params=464_154, source=_HE)
register("resnet56", resnet.resnet56, input_shape=(32, 32, 3), dataset="cifar10", params=853_018, source=_HE)
register("resnet18", resnet.resnet18, input_shape=(32, 32, 3), dataset="cifar10", params=11_173_962,
         source="He et al. 2016 (ResNet-18 widths) with a 3x3 stride-1 stem for CIFAR, as kuangliu/pytorch-cifar")
register("vgg11", vgg.vgg11, input_shape=(32, 32, 3), dataset="cifar10", params=9_228_362,
         source="Simonyan & Zisserman 2014 (configuration A) with BatchNorm, for CIFAR")
register("vgg16", vgg.vgg16, input_shape=(32, 32, 3), dataset="cifar10", params=14_724_042,
         source="Simonyan & Zisserman 2014 (configuration D) with BatchNorm, for CIFAR")
register("speedrun", airbench.speedrun, input_shape=(32, 32, 3), dataset="cifar10", params=1_971_640,
         source="Jordan 2024, airbench94 (cnnjax.train.recipes.cifar10_speedrun trains it)")
register("speedrun_mnist", airbench.speedrun_mnist, input_shape=(28, 28, 1), dataset="mnist", params=141_544,
         source="the airbench94 network at widths (32, 64, 64) for MNIST (cnnjax.train.recipes.mnist_speedrun)")
