"""Counting parameters of any pytree of arrays (or of ``jax.ShapeDtypeStruct``, e.g. from ``jax.eval_shape``)."""
from __future__ import annotations

import math
from typing import Any, Mapping, Tuple

import jax

__all__ = ["count_params", "count_variables"]


def count_params(params: Any) -> int:
    """The number of scalars in a pytree of arrays: the sum of ``prod(leaf.shape)`` over its leaves.

    >>> count_params({"kernel": jnp.zeros((3, 3, 1, 32)), "bias": jnp.zeros((32,))})   # 3*3*1*32 + 32
    320

    Pass ``variables["params"]`` for the trainable parameters; passing the whole ``variables`` dict also counts
    the non-trainable collections (e.g. BatchNormalization's ``batch_stats``). Python scalars count as 1.
    """
    return sum(math.prod(getattr(leaf, "shape", ())) for leaf in jax.tree_util.tree_leaves(params))


def count_variables(variables: Mapping[str, Any]) -> Tuple[int, int]:
    """``(trainable, non_trainable)``: the ``"params"`` collection, and every other collection.

    Keras' convention: BatchNormalization's running mean and variance are non-trainable parameters.
    """
    if not isinstance(variables, Mapping):
        raise TypeError(
            f"count_variables: variables must be a dict of collections (as returned by Module.init), got "
            f"{type(variables).__name__}.")
    trainable = count_params(variables.get("params", {}))
    other = sum(count_params(tree) for name, tree in variables.items() if name != "params")
    return trainable, other
