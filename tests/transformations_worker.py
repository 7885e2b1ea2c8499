"""Shared cases of the transformation table (tests/test_transformations.py), and its multi-device worker.

Imported by the test for the op and model cases. Run as ``python tests/transformations_worker.py OUT_JSON
[MODEL ...]`` with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` in the environment (before jax loads):
checks every op and the named models under ``jax.pmap`` and ``shard_map`` against the single-device result and
writes one result per case (``{"case": "max_pool-pmap", "ok": bool, "error": str}``), also printing one line
per case.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import traceback
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

import cnnjax
from cnnjax import functional as F

# XLA's cheapest compilation (compile-bound on 2 cores; no result's maths changes)
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}

# ---------------------------------------------------------------------------------------------------- ops


@dataclasses.dataclass
class OpCase:
    """``fn(p, x, aux)``: ``p`` a dict of float parameters (possibly empty), ``x`` the float input, ``aux`` a
    non-differentiated extra argument (a PRNG key, integer labels) or None. ``aux_stack`` (leading axis 2) is
    what the vmap-over-parameters column maps over when ``p`` is empty."""
    name: str
    fn: Callable
    x_shape: tuple
    p_shapes: dict = dataclasses.field(default_factory=dict)
    aux: Callable = None          # () -> aux
    aux_stack: Callable = None    # () -> aux with a leading axis of 2
    positive: tuple = ()          # parameters that must stay > 0 (variances)
    fd_tol: float = 2e-2          # relative tolerance against central finite differences (float32)

    def inputs(self, seed=0):
        rng = np.random.default_rng(seed)
        x = jnp.asarray(rng.normal(size=self.x_shape), jnp.float32)
        p = {k: jnp.asarray(rng.normal(size=s) * 0.5 + (1.5 if k in self.positive else 0.0), jnp.float32)
             for k, s in self.p_shapes.items()}
        return p, x, (self.aux() if self.aux else None)

    def __call__(self, p, x, aux=None):
        return self.fn(p, x, aux)


def _key():
    return jax.random.key(7)


def _conv(name, x_shape, k_shape, **kw):
    op = getattr(F, name.split("@")[0])
    return OpCase(name, lambda p, x, _: op(x, p["kernel"], p["bias"], **kw), x_shape,
                  {"kernel": k_shape, "bias": (k_shape[-1],)})


def _plain(name, fn, x_shape=(2, 6, 6, 2), **kw):
    return OpCase(name, lambda p, x, _: fn(x), x_shape, **kw)


OPS = [
    _conv("conv", (2, 6, 6, 2), (3, 3, 2, 3), strides=2, padding="same"),
    _conv("conv@nchw", (2, 2, 6, 6), (3, 3, 2, 3), padding=1, data_format="channels_first"),
    _conv("conv1d", (2, 7, 2), (3, 2, 3), dilation=2),
    _conv("conv2d", (2, 6, 6, 4), (3, 3, 2, 4), groups=2, padding="same"),
    _conv("conv3d", (2, 4, 4, 4, 2), (2, 2, 2, 2, 3), strides=(1, 2, 1)),
    _conv("conv_transpose", (2, 4, 4, 2), (3, 3, 2, 3), strides=2, padding="same"),
    _plain("max_pool", lambda x: F.max_pool(x, 3, 2, "same")),
    _plain("avg_pool", lambda x: F.avg_pool(x, 3, 2, "same")),
    _plain("avg_pool@pad", lambda x: F.avg_pool(x, 3, 2, ((1, 1), (1, 1)), ceil_mode=True,
                                                 count_include_pad=True)),
    _plain("min_pool", lambda x: F.min_pool(x, 2)),
    _plain("global_avg_pool", F.global_avg_pool),
    _plain("global_max_pool", F.global_max_pool),
    _plain("channel_max_pool", lambda x: F.channel_max_pool(x, 2), x_shape=(2, 4, 4, 4)),
    OpCase("dense", lambda p, x, _: F.dense(x, p["kernel"], p["bias"]), (2, 5), {"kernel": (5, 3), "bias": (3,)}),
    _plain("flatten", F.flatten),
    OpCase("dropout", lambda p, x, key: F.dropout(x, 0.5, rng=key), (2, 6, 6, 2), aux=_key,
           aux_stack=lambda: jax.random.split(_key(), 2)),
    OpCase("softmax_cross_entropy", lambda p, x, labels: F.softmax_cross_entropy(x, labels, label_smoothing=0.1),
           (4, 5), aux=lambda: jnp.array([0, 3, 4, 1], jnp.int32),
           aux_stack=lambda: jnp.array([[0, 3, 4, 1], [2, 2, 0, 4]], jnp.int32)),
    OpCase("batch_norm", lambda p, x, _: F.batch_norm(x, p["mean"], p["var"], p["scale"], p["bias"]),
           (2, 6, 6, 2), {"mean": (2,), "var": (2,), "scale": (2,), "bias": (2,)}, positive=("var",)),
    _plain("batch_moments", lambda x: F.batch_moments(x, (0, 1, 2))),
] + [_plain(f"act_{a}", F.get_activation(a), x_shape=(2, 6)) for a in sorted(F.ACTIVATIONS)]

OP_NAMES = [op.name for op in OPS]
OPS_BY_NAME = {op.name: op for op in OPS}


# ---------------------------------------------------------------------------------------------------- models


def model_variables(name, seed=0):
    """Variables for ``name`` without compiling ``init``: ``jax.eval_shape`` gives the tree, NumPy fills it.

    Kernels ~ N(0, 1/fan_in) (0.5/fan_in for convs, so that deep residual stacks in inference mode keep O(1)
    activations and the loss is not saturated), biases small, BatchNorm scales and variances near 1."""
    model = cnnjax.models.get(name)
    shape = (1, *cnnjax.models.input_shape(name))
    abstract = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct(shape, jnp.float32))
    rng = np.random.default_rng(seed)

    def fill(path, a):
        last = str(getattr(path[-1], "key", path[-1]))
        if last == "kernel":
            fan = int(np.prod(a.shape[:-1]))
            gain = 0.5 if len(a.shape) > 2 else 1.0
            return jnp.asarray(rng.normal(size=a.shape) * gain / np.sqrt(fan), a.dtype)
        if last in ("scale", "var"):
            return jnp.asarray(1.0 + 0.1 * rng.random(a.shape), a.dtype)
        return jnp.asarray(0.05 * rng.normal(size=a.shape), a.dtype)

    return model, jax.tree_util.tree_map_with_path(fill, abstract)


def model_input(name, batch, seed=1):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.normal(size=(batch, *cnnjax.models.input_shape(name))), jnp.float32)


# ---------------------------------------------------------------------------------------------------- shard_map


def get_shard_map():
    """``jax.shard_map`` (jax >= 0.7), else ``jax.experimental.shard_map.shard_map``."""
    if hasattr(jax, "shard_map"):
        return jax.shard_map
    from jax.experimental.shard_map import shard_map
    return shard_map


def _shard(f, mesh, P):
    smap = get_shard_map()
    try:
        return smap(f, mesh=mesh, in_specs=P("d"), out_specs=P("d"))
    except TypeError:   # an older signature
        return smap(f, mesh, in_specs=P("d"), out_specs=P("d"))


def _close(a, b, tol):
    jax.tree_util.tree_map(lambda u, v: np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=tol,
                                                                   atol=tol), a, b)


def _run_parallel(case, per_item, stacked, tol):
    """``per_item(x_i)`` for each ``x_i`` of ``stacked`` (leading axis = devices): pmap and shard_map against
    the single-device loop."""
    from jax.sharding import Mesh, PartitionSpec as P
    n = jax.device_count()
    ref = jax.tree_util.tree_map(lambda *ys: jnp.stack(ys), *[jax.jit(per_item, compiler_options=FAST_COMPILE)(stacked[i]) for i in range(n)])
    out = {}
    try:
        got = jax.pmap(per_item)(stacked)
        _close(got, ref, tol)
        out["pmap"] = ""
    except Exception as e:   # noqa: BLE001 - reported per case
        out["pmap"] = f"{type(e).__name__}: {e}"[:2000]
    try:
        mesh = Mesh(np.array(jax.devices()), ("d",))
        body = lambda xs: jax.tree_util.tree_map(lambda y: y[None], per_item(xs[0]))  # noqa: E731
        got = jax.jit(_shard(body, mesh, P), compiler_options=FAST_COMPILE)(stacked)
        _close(got, ref, tol)
        out["shard_map"] = ""
    except Exception as e:   # noqa: BLE001
        out["shard_map"] = f"{type(e).__name__}: {e}"[:2000]
    return out


def main(out_path, models):
    n = jax.device_count()
    results = []

    def record(name, outcome):
        for column, err in outcome.items():
            results.append({"case": f"{name}-{column}", "ok": not err, "error": err})
            print(f"{name}-{column} {'PASS' if not err else 'FAIL ' + err.splitlines()[0]}", flush=True)

    for op in OPS:
        try:
            p, _, aux = op.inputs()
            xs = jnp.stack([op.inputs(seed=10 + i)[1] for i in range(n)])
            record(op.name, _run_parallel(op.name, lambda x, p=p, aux=aux, op=op: op(p, x, aux), xs, 1e-5))
        except Exception as e:   # noqa: BLE001
            record(op.name, {"pmap": f"{type(e).__name__}: {e}", "shard_map": f"{type(e).__name__}: {e}"})
    for name in models:
        try:
            model, variables = model_variables(name)
            xs = model_input(name, n)[:, None]       # one example per device
            fn = lambda x, model=model, variables=variables: model.apply(variables, x, train=False)  # noqa: E731
            record(name, _run_parallel(name, fn, xs, 1e-4))
        except Exception as e:   # noqa: BLE001
            err = f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
            record(name, {"pmap": err, "shard_map": err})
    with open(out_path, "w") as f:
        json.dump({"devices": n, "results": results}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
