"""cnnjax: convolutional neural networks in JAX, explained shape by shape.

Layers of the package, each importing only those before it (``tests/test_layering.py`` checks this):
``shapes`` (plain-Python formulas) → ``functional`` (pure jax ops) → ``layers`` (Flax linen wrappers) →
``models``, ``nnx``, ``model_summary``, ``keras_bridge`` → ``data`` / ``train`` / ``artifact`` → ``viz`` →
the command line (``cnnjax.cli``).

The top level holds what a user reaches for first: the sub-packages, the main Keras-style layers, ``summary``,
``count_params``, ``export`` / ``load_export`` and ``__version__``. Every layer (the pooling aliases
``MaxPool2D``, ``AvgPool2D``, ... and the 1-D/3-D and transposed variants included) is in :mod:`cnnjax.layers`.
"""
from cnnjax import shapes
from cnnjax import functional
from cnnjax import layers
from cnnjax.layers import (Activation, AveragePooling2D, BatchNormalization, Conv1D, Conv2D, Conv2DTranspose, Conv3D,
                           Dense, DepthwiseConv2D, Dropout, Flatten, GlobalAveragePooling2D, GlobalMaxPooling2D,
                           MaxPooling2D, Sequential)
from cnnjax import models
from cnnjax import nnx
from cnnjax import keras_bridge
from cnnjax.params import count_params
from cnnjax.model_summary import summary
from cnnjax.artifact import export, load_export
from cnnjax.version import __version__

__all__ = ["__version__", "shapes", "functional", "layers", "models", "nnx", "keras_bridge", "summary",
           "count_params", "export", "load_export",
           "Conv1D", "Conv2D", "Conv3D", "Conv2DTranspose", "DepthwiseConv2D", "Dense", "Flatten", "Dropout",
           "Activation", "BatchNormalization", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D",
           "GlobalMaxPooling2D", "Sequential"]
