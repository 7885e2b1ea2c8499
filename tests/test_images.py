"""cnnjax.functional.as_float_images: the one uint8 -> float conversion of every model input path."""
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax.functional import as_float_images


def test_uint8_is_divided_by_255_and_floats_pass_unchanged():
    pixels = np.array([[0, 1, 128, 255]], np.uint8)
    out = as_float_images(pixels)
    assert out.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(out), pixels.astype(np.float32) / np.float32(255))
    floats = np.array([0.0, 0.25, 1.0], np.float32)
    np.testing.assert_array_equal(np.asarray(as_float_images(floats)), floats)
    assert as_float_images(pixels, jnp.bfloat16).dtype == jnp.bfloat16


def test_pixels_of_unknown_range_are_refused():
    with pytest.raises(TypeError, match="as_float_images: images have dtype int32"):
        as_float_images(np.zeros((2, 2), np.int32))
