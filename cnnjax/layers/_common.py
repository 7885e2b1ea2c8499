"""Helpers shared by the layers: argument checks at ``init`` and the dtype policy (no ops live here)."""
from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype

from cnnjax import _args
from cnnjax import functional as F
from cnnjax.functional.checks import compute_dtype

_LAYOUTS = {1: ("(batch, width, channels)", "(batch, channels, width)"),
            2: ("(batch, height, width, channels)", "(batch, channels, height, width)"),
            3: ("(batch, depth, height, width, channels)", "(batch, channels, depth, height, width)")}


def activation(value: Optional[str | Callable], layer: str) -> Callable:
    """The activation function for ``value`` (None means linear), errors prefixed by the layer's name."""
    try:
        return F.get_activation("linear" if value is None else value)
    except (ValueError, TypeError) as err:
        raise type(err)(f"{layer}: activation={value!r} is not valid: {err}") from None


def check_rank(x, n: int, layer: str, data_format: str = "channels_last") -> str:
    """Checks that ``x`` has ``n`` spatial axes (rank ``n + 2``); returns the canonical data format."""
    fmt = _args.data_format(data_format, n, layer)
    if jnp.ndim(x) != n + 2:
        layout = _LAYOUTS[n][0 if fmt == "channels_last" else 1]
        rank = jnp.ndim(x)
        hint = ("; add a batch axis with x[None] for a single example" if rank == n + 1 else
                "; is there one axis too many? An input_shape (summary, create_state, the zoo's input_shape) is "
                "one example's shape, without the batch axis" if rank == n + 3 else "")
        raise ValueError(
            f"{layer}: input of shape {tuple(jnp.shape(x))} has rank {rank}, but {layer} needs rank "
            f"{n + 2}: {layout}{hint}.")
    return fmt


def cast(x, *params, dtype: Any, layer: str) -> Tuple[Any, ...]:
    """Casts a floating input and the layer's parameters to the computation dtype.

    ``dtype=None`` promotes (float32 params with a bfloat16 input compute in float32); ``dtype=jnp.bfloat16``
    computes in bfloat16 while the parameters stay stored in ``param_dtype``. A non-floating input is passed on
    unchanged so that :mod:`cnnjax.functional` raises its TypeError (e.g. uint8 images not yet scaled).
    A ``dtype`` that is not a floating dtype raises ValueError naming ``layer``.
    """
    dtype = compute_dtype(dtype, layer)
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
        return (x, *params)
    return tuple(promote_dtype(x, *params, dtype=dtype))


def param(module, name: str, init: Callable, shape: tuple, dtype: Any, x, layer: str):
    """``module.param(name, init, shape, dtype)`` with a clear ValueError where the variables already hold
    ``name`` with another shape: variables made for inputs of another shape (Flax would raise its
    ScopeParamShapeError without the input's shape)."""
    if module.has_variable("params", name):
        stored = tuple(jnp.shape(module.get_variable("params", name)))
        if stored != tuple(shape):
            where = "/".join(module.scope.path) or layer
            raise ValueError(
                f"{layer} {where!r}: its {name} in the variables has shape {stored}, but its input, of shape "
                f"{tuple(jnp.shape(x))}, needs {tuple(shape)}; apply the variables to inputs of the shape they were "
                "initialised with, or initialise the model again for this input shape.")
    return module.param(name, init, shape, dtype)
