"""Array checks shared by the functional ops (raise, never assert: user input must get a message)."""
from __future__ import annotations

import jax.numpy as jnp


def floating(x, name: str, fn: str):
    """Returns ``x`` as an array; TypeError unless its dtype is floating (float16/bfloat16/float32/float64)."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"{fn}: {name} has dtype {x.dtype}, but it must be floating (float32, bfloat16, float16, float64); "
            f"convert it first, e.g. {name}.astype(jnp.float32) / 255 for uint8 images.")
    return x


def rank(x, expected, name: str, fn: str, what: str):
    if x.ndim not in ((expected,) if isinstance(expected, int) else tuple(expected)):
        raise ValueError(f"{fn}: {name} of shape {tuple(x.shape)} has rank {x.ndim}, but {what}.")


def common_dtype(*arrays):
    """The promoted dtype of floating arrays, e.g. bfloat16 + float32 -> float32."""
    return jnp.result_type(*[a.dtype for a in arrays if a is not None])
