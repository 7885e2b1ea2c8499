"""Counting parameters of any pytree of arrays (or of ``jax.ShapeDtypeStruct``, e.g. from ``jax.eval_shape``), and
`check_model`, the check that a model argument is a flax Module (summary, create_state, fit, evaluate)."""
from __future__ import annotations

import math
import numbers
from typing import Any, Mapping, Tuple

import flax.linen as nn
import jax
from flax import nnx

__all__ = ["count_params", "count_variables", "check_model"]


def check_model(fn: str, model: Any) -> None:
    """TypeError naming `fn` unless `model` is a flax linen Module instance; a model's name gets the registry's hint,
    an NNX module the adapter's (`cnnjax.nnx.as_linen`)."""
    if isinstance(model, nn.Module):
        return
    if isinstance(model, nnx.Module):
        raise TypeError(f"{fn}: model is the Flax NNX module {type(model).__name__}; {fn} takes a linen Module: "
                        "pass cnnjax.nnx.as_linen(model) (and cnnjax.nnx.update(model, state) to write trained "
                        "weights back).")
    if isinstance(model, str):
        raise TypeError(f"{fn}: model must be a flax Module, got str {model!r}; use cnnjax.models.get({model!r}).")
    if isinstance(model, type) and issubclass(model, nn.Module):
        raise TypeError(f"{fn}: model must be a flax Module, got the class {model.__name__}; create one first, "
                        f"e.g. {model.__name__}().")
    raise TypeError(f"{fn}: model must be a flax Module (e.g. cnnjax.models.get('mnist_cnn') or a "
                    f"cnnjax.layers.Sequential), got {type(model).__name__}.")


def count_params(params: Any) -> int:
    """The number of scalars in a pytree of arrays: the sum of ``prod(leaf.shape)`` over its leaves.

    >>> count_params({"kernel": jnp.zeros((3, 3, 1, 32)), "bias": jnp.zeros((32,))})   # 3*3*1*32 + 32
    320

    Pass ``variables["params"]`` for the trainable parameters; passing the whole ``variables`` dict also counts
    the non-trainable collections (e.g. BatchNormalization's ``batch_stats``). Python scalars count as 1; a flax
    Module, None or a leaf that is neither an array nor a number raise TypeError.
    """
    if isinstance(params, nn.Module):
        raise TypeError("count_params: got a flax Module; pass its params (variables[\"params\"] from "
                        "model.init(...)), or see cnnjax.summary(model, input_shape) for a table.")
    if params is None:
        raise TypeError("count_params: got None; pass a pytree of arrays, e.g. variables[\"params\"] from "
                        "model.init(...).")
    total = 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        if hasattr(leaf, "shape"):
            total += math.prod(leaf.shape)
        elif isinstance(leaf, numbers.Number) and not isinstance(leaf, bool):
            total += 1
        else:
            where = jax.tree_util.keystr(path) or "the top level"
            raise TypeError(f"count_params: the leaf at {where} is {type(leaf).__name__} {leaf!r}, not an array "
                            "or a number; pass a pytree of arrays, e.g. variables[\"params\"].")
    return total


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
