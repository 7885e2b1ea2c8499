"""Helpers shared by the NNX layers: argument checks at construction, the dtype policy, the rng argument."""
from __future__ import annotations

from typing import Any, Callable, Optional

import jax.numpy as jnp
from flax import nnx
from flax.linen.dtypes import promote_dtype

from cnnjax import _args
from cnnjax import functional as F
from cnnjax.functional.checks import compute_dtype

_LAYOUTS = {1: ("(batch, width, channels)", "(batch, channels, width)"),
            2: ("(batch, height, width, channels)", "(batch, channels, height, width)"),
            3: ("(batch, depth, height, width, channels)", "(batch, channels, depth, height, width)")}


def as_rngs(rngs: Any, layer: str) -> nnx.Rngs:
    """``rngs`` as an ``nnx.Rngs`` (an int seeds one: ``nnx.Rngs(seed)``); TypeError naming the layer otherwise."""
    if isinstance(rngs, nnx.Rngs):
        return rngs
    if isinstance(rngs, int) and not isinstance(rngs, bool):
        return nnx.Rngs(rngs)
    raise TypeError(f"{layer}: rngs must be an nnx.Rngs (e.g. flax.nnx.Rngs(0)) or an int seed, got "
                    f"{type(rngs).__name__} {rngs!r}.")


def activation_fn(value: Optional[str | Callable], layer: str) -> Callable:
    """The activation function for ``value`` (None means linear), errors prefixed by the layer's name; layers
    look it up at construction, so that an unknown name fails there."""
    try:
        return F.get_activation("linear" if value is None else value)
    except (ValueError, TypeError) as err:
        raise type(err)(f"{layer}: activation={value!r} is not valid: {err}") from None


def check_rank(x, n: int, layer: str, fmt: str) -> None:
    """ValueError naming ``layer`` unless ``x`` has ``n`` spatial axes (rank ``n + 2``)."""
    ndim = jnp.ndim(x)
    if ndim != n + 2:
        layout = _LAYOUTS[n][0 if fmt == "channels_last" else 1]
        hint = "; add a batch axis with x[None] for a single example" if ndim == n + 1 else ""
        raise ValueError(f"{layer}: input of shape {tuple(jnp.shape(x))} has rank {ndim}, but {layer} needs rank "
                         f"{n + 2}: {layout}{hint}.")


def check_input(x, n: int, layer: str, fmt: str, axis: int, expected: int, what: str) -> None:
    """ValueError naming ``layer`` unless ``x`` has rank ``n + 2`` and ``expected`` entries on ``axis``."""
    check_rank(x, n, layer, fmt)
    got = jnp.shape(x)[axis]
    if _args.surely(lambda: got != expected):
        raise ValueError(f"{layer}: input of shape {tuple(jnp.shape(x))} has {got} {what}, but this layer was built "
                         f"for {expected}; feed it inputs with {expected} {what}, or build the layer for {got}.")


def cast(x, *params, dtype: Any, layer: str):
    """The input and the parameters in the computation dtype, as the linen layers do: ``dtype=None`` promotes,
    a floating ``dtype`` casts; a non-floating input is passed on (so that :mod:`cnnjax.functional` names it)."""
    dtype = compute_dtype(dtype, layer)
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
        return (x, *params)
    return tuple(promote_dtype(x, *params, dtype=dtype))


def frozen(value_):
    """Lists (e.g. a padding ``[(1, 1), (2, 2)]``) as tuples, recursively: NNX keeps them as static attributes."""
    return tuple(frozen(v) for v in value_) if isinstance(value_, (list, tuple)) else value_


def value(variable):
    """The array a Param or BatchStat holds (None for a missing optional one)."""
    return None if variable is None else variable[...]
