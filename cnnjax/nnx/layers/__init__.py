"""Keras-style Flax NNX layers over :mod:`cnnjax.functional`, the NNX twins of :mod:`cnnjax.layers`.

Keras defaults as in the linen layers (``padding="valid"``, pool ``strides = pool_size``, glorot-uniform kernels,
zero biases); NNX builds eagerly, so layers with parameters take their input size first: ``Conv2D(in_channels,
filters, kernel_size, rngs=...)``, ``Dense(in_features, units, rngs=...)``, ``BatchNormalization(num_features)``.
Variable names and shapes are the linen layers' (``kernel``, ``bias``; ``scale``, ``bias``, ``mean``, ``var``).
``Dropout`` and ``BatchNormalization`` take ``train`` (None: the mode that ``model.train()`` / ``model.eval()``
set; inference by default).
"""
from cnnjax.nnx.layers.conv import Conv1D, Conv2D, Conv3D
from cnnjax.nnx.layers.dense import Activation, Dense, Dropout, Flatten
from cnnjax.nnx.layers.norm import BatchNorm, BatchNormalization
from cnnjax.nnx.layers.pool import (AveragePooling1D, AveragePooling2D, AveragePooling3D, AvgPool2D,
                                    GlobalAveragePooling2D, GlobalAvgPool2D, GlobalMaxPool2D, GlobalMaxPooling2D,
                                    MaxPool2D, MaxPooling1D, MaxPooling2D, MaxPooling3D, MinPooling2D)
from cnnjax.nnx.layers.sequential import Sequential

__all__ = [
    "Conv1D", "Conv2D", "Conv3D", "Dense", "Flatten", "Dropout", "Activation", "BatchNormalization", "BatchNorm",
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "MaxPool2D", "MinPooling2D",
    "AveragePooling1D", "AveragePooling2D", "AveragePooling3D", "AvgPool2D",
    "GlobalAveragePooling2D", "GlobalAvgPool2D", "GlobalMaxPooling2D", "GlobalMaxPool2D", "Sequential",
]
