"""Activation functions by Keras name."""
from __future__ import annotations

from typing import Callable, Union

import jax
import jax.numpy as jnp

__all__ = ["ACTIVATIONS", "get_activation"]


def _linear(x):
    return x


ACTIVATIONS = {
    "linear": _linear,
    "relu": jax.nn.relu,
    "relu6": jax.nn.relu6,
    "elu": jax.nn.elu,
    "gelu": jax.nn.gelu,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "softmax": jax.nn.softmax,
    "log_softmax": jax.nn.log_softmax,
    "softplus": jax.nn.softplus,
    "swish": jax.nn.silu,
    "silu": jax.nn.silu,
    "leaky_relu": jax.nn.leaky_relu,
}


def get_activation(activation: Union[str, Callable, None]) -> Callable:
    """A callable for a Keras activation name (``None`` is linear), or the callable itself."""
    if activation is None:
        return _linear
    if callable(activation):
        return activation
    if isinstance(activation, str) and activation.lower() in ACTIVATIONS:
        return ACTIVATIONS[activation.lower()]
    raise ValueError(
        f"get_activation: unknown activation={activation!r}; use a callable or one of "
        f"{', '.join(sorted(ACTIVATIONS))}.")
