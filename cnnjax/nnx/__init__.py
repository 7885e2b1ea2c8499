"""Flax NNX layers and zoo models over :mod:`cnnjax.functional`, usable wherever cnnjax takes a linen model.

- :mod:`cnnjax.nnx.layers`: NNX twins of the Keras-style layers (``Conv2D(in_channels, filters, kernel_size,
  rngs=...)``, ``Dense(in_features, units, rngs=...)``, pools, ``Flatten``, ``Dropout``, ``BatchNormalization``,
  ``Sequential``), with the linen layers' defaults, variable names and shapes.
- :mod:`cnnjax.nnx.models`: NNX twins of zoo models (the lecture models, LeNet-5) with the linen zoo's
  parameter counts and variable trees; ``models.get("mnist_cnn", rngs=0)``.
- :mod:`cnnjax.nnx.adapter`: :func:`as_linen` (the linen view ``fit``, ``evaluate``, ``summary`` and ``viz``
  run), :func:`linen_variables` and :func:`update` (variables out of and into the NNX module).
"""
from cnnjax.nnx import layers, models
from cnnjax.nnx.adapter import NNXModel, as_linen, is_nnx, linen_variables, update

__all__ = ["layers", "models", "as_linen", "linen_variables", "update", "is_nnx", "NNXModel"]
