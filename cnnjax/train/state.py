"""The training state: everything that changes during training, as one pytree of arrays.

`TrainState` holds no functions: the model and the optimizer are passed to the step builders in `steps.py`.
Fields:
- ``step``: int32 scalar, optimizer steps taken so far (also the position in the data order)
- ``params``: float32 parameters (collection "params")
- ``opt_state``: the Optax state of `tx.init(params)`
- ``batch_stats``: BatchNorm running statistics (collection "batch_stats"), ``{}`` for models without BatchNorm
- ``rng``: uint32[2] base key; the dropout key of step t is ``fold_in(rng, t)`` (then per device / member)
"""
from __future__ import annotations

from functools import partial
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from cnnjax.functional.checks import prng_key
from cnnjax.params import check_model


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any
    batch_stats: Any
    rng: jax.Array


def create_state(model, tx: optax.GradientTransformation, *, input_shape, key) -> TrainState:
    """Initialise `model` on a zero batch of shape (1, *input_shape) (NHWC) and `tx` on its params.

    `key` (a PRNG key: ``jax.random.key(0)`` or the uint32[2] ``jax.random.PRNGKey(0)``; a plain int is a
    TypeError) is split into the parameter-init key, the init-time dropout key and the
    state's base rng, so two states from different keys differ in both initial weights and dropout masks.
    """
    check_model("create_state", model)
    prng_key(key, "key", "create_state")
    if not isinstance(input_shape, (tuple, list)) or not all(isinstance(d, int) and d > 0 for d in input_shape):
        raise ValueError(f"create_state: input_shape must be a tuple of positive ints (H, W, C), got {input_shape!r}.")
    init_key, dropout_key, rng = jax.random.split(key, 3)
    x = jnp.zeros((1, *input_shape), jnp.float32)
    variables = jax.jit(partial(model.init, train=False))({"params": init_key, "dropout": dropout_key}, x)
    params = variables["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      batch_stats=variables.get("batch_stats", {}), rng=rng)


def param_signature(params) -> dict[str, list]:
    """{'/'-joined path: [shape..., dtype]} of a params tree, for checkpoint compatibility checks."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return {"/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path): [*map(int, leaf.shape),
                                                                                    str(leaf.dtype)]
            for path, leaf in flat}
