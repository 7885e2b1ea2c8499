"""Pure-function CNN ops: every array in, array out, no state.

``from cnnjax import functional as F``. Output shapes come from :mod:`cnnjax.shapes`.
"""
from cnnjax.functional.activations import ACTIVATIONS, get_activation
from cnnjax.functional.augment import compose, cutout, from_spec, random_crop, random_flip, random_translate
from cnnjax.functional.conv_ops import conv, conv1d, conv2d, conv3d, conv_transpose
from cnnjax.functional.dense_ops import dense, dropout, flatten
from cnnjax.functional.images import as_float_images
from cnnjax.functional.losses import accuracy, softmax_cross_entropy
from cnnjax.functional.norm import batch_moments, batch_norm
from cnnjax.functional.pool import (avg_pool, channel_max_pool, global_avg_pool, global_max_pool, max_pool,
                                    min_pool)

__all__ = [
    "conv", "conv1d", "conv2d", "conv3d", "conv_transpose",
    "max_pool", "avg_pool", "min_pool", "global_avg_pool", "global_max_pool", "channel_max_pool",
    "dense", "flatten", "dropout", "softmax_cross_entropy", "accuracy",
    "batch_moments", "batch_norm", "get_activation", "ACTIVATIONS",
    "random_flip", "random_translate", "random_crop", "cutout", "compose", "from_spec", "as_float_images",
]
