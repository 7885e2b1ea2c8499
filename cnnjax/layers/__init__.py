"""Keras-style Flax (linen) layers, each a thin wrapper of one :mod:`cnnjax.functional` op.

Keras defaults, not Flax's: ``padding="valid"``, pool ``strides = pool_size``, glorot-uniform kernels, zero
biases, activations by name. Parameters are plain nested dicts (``{"params": {"layers_0": {"kernel": ...}}}``).
Layers that behave differently in training (``Dropout``, ``BatchNormalization``) take ``train: bool = False``.
"""
from cnnjax.layers.conv import (Conv1D, Conv1DTranspose, Conv2D, Conv2DTranspose, Conv3D, Conv3DTranspose,
                                DepthwiseConv2D)
from cnnjax.layers.dense import Activation, Dense, Dropout, Flatten
from cnnjax.layers.norm import BatchNorm, BatchNormalization
from cnnjax.layers.pool import (AveragePooling1D, AveragePooling2D, AveragePooling3D, AvgPool1D, AvgPool2D,
                                AvgPool3D, ChannelMaxPool, GlobalAveragePooling1D, GlobalAveragePooling2D,
                                GlobalAveragePooling3D, GlobalAvgPool1D, GlobalAvgPool2D, GlobalAvgPool3D,
                                GlobalMaxPool1D, GlobalMaxPool2D, GlobalMaxPool3D, GlobalMaxPooling1D,
                                GlobalMaxPooling2D, GlobalMaxPooling3D, MaxPool1D, MaxPool2D, MaxPool3D,
                                MaxPooling1D, MaxPooling2D, MaxPooling3D, MinPool1D, MinPool2D, MinPool3D,
                                MinPooling1D, MinPooling2D, MinPooling3D)
from cnnjax.layers.sequential import Sequential

__all__ = [
    "Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "MaxPool1D", "MaxPool2D", "MaxPool3D",
    "AveragePooling1D", "AveragePooling2D", "AveragePooling3D", "AvgPool1D", "AvgPool2D", "AvgPool3D",
    "MinPooling1D", "MinPooling2D", "MinPooling3D", "MinPool1D", "MinPool2D", "MinPool3D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
    "GlobalAvgPool1D", "GlobalAvgPool2D", "GlobalAvgPool3D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
    "GlobalMaxPool1D", "GlobalMaxPool2D", "GlobalMaxPool3D", "ChannelMaxPool",
    "Dense", "Flatten", "Dropout", "Activation", "BatchNormalization", "BatchNorm", "Sequential",
]
