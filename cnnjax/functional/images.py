"""Images as the models take them: the one place where uint8 pixels become floats.

``as_float_images(images, dtype=None)``: uint8 images ``x`` become ``x / 255`` in float32 (values in [0, 1]);
floating images are taken as they are (they are expected in [0, 1] already); the result is then cast to `dtype`
when one is given (e.g. bfloat16 compute). Every path that feeds images to a model (the training and evaluation
steps, `predict`, exported artifacts) goes through it, so they all scale alike.
"""
from __future__ import annotations

import jax.numpy as jnp

__all__ = ["as_float_images"]


def as_float_images(images, dtype=None):
    """uint8 -> ``images / 255`` in float32; floating images unchanged; then cast to `dtype` if given. Other
    dtypes (int32 pixels, bools) are a TypeError: their range is unknown."""
    images = jnp.asarray(images)
    if images.dtype == jnp.uint8:
        x = images.astype(jnp.float32) / 255.0
    elif jnp.issubdtype(images.dtype, jnp.floating):
        x = images
    else:
        raise TypeError(f"as_float_images: images have dtype {images.dtype}; give uint8 pixels (0..255) or float "
                        "images in [0, 1].")
    return x.astype(dtype) if dtype is not None else x
