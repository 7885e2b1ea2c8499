"""Micro-benchmarks of conv / pool / dense forward+backward implementations on the current backend (XLA:CPU here).

Each case is one layer of a benchmark model at batch 128, timed as ``jit(value_and_grad(sum(layer(...)**2)))``
with respect to the layer's parameters (and its input, except for a first layer, whose input gradient training
never asks for). Figures are the median over ``--repeats`` timed runs of ``--calls`` calls each, after one
compile+warm-up call, device-synchronised (``block_until_ready``). Implementations:

- conv ``xla``: ``lax.conv_general_dilated`` NHWC/HWIO (what ``cnnjax.functional.conv`` computes);
  ``xla_nchw``: the same conv in NCHW/OIHW with transposes around it;
  ``patches``: ``lax.conv_general_dilated_patches`` then one matmul; ``im2col``: the patches built from
  ``kh*kw`` strided slices concatenated on the channel axis, then one matmul (``cnnjax.train.cpu_speed.conv_forms``);
  ``im2col_vjp``: the same with its custom VJP (kernel gradient ``dot(P, dy)``, what XLA:CPU runs for first
  layers in fit's CPU steps); ``split_grad``: the XLA conv with its kernel gradient summed over batch chunks of 8 images (what
  fit's CPU steps run for the other convs).
- pool ``reduce_window``: ``lax.reduce_window`` (its max gradient is ``select_and_scatter_add``);
  ``reshape``: non-overlapping 2x2 windows as a reshape and a max/mean over the window axes (its max gradient
  splits ties); ``slices_vjp``: ``cnnjax.train.cpu_speed.pool_forms.window_extreme`` (max of strided slices, gradient
  to the first maximum as reduce_window's; avg pool: as ``reshape``).
- dense: ``x @ w + b`` at the default precision (one implementation; the reference scale for the others).

    python experiments/bench_cpu_ops.py                 # all cases
    python experiments/bench_cpu_ops.py --only conv --calls 10 --repeats 5 --json out.json

Results (with the machine and its load) go to experiments/SPEED.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cnnjax.train.cpu_speed import conv_forms, pool_forms

BATCH = 128

# name: (input NHWC without batch, kernel HWIO, padding, input needs a gradient)
CONV_CASES = {
    "mnist_cnn.conv1 28x28x1 k3 32 valid": ((28, 28, 1), (3, 3, 1, 32), "VALID", False),
    "flax_cnn.conv1 28x28x1 k3 32 same": ((28, 28, 1), (3, 3, 1, 32), "SAME", False),
    "flax_cnn.conv2 14x14x32 k3 64 same": ((14, 14, 32), (3, 3, 32, 64), "SAME", True),
    "mnist_cnn2.conv2 13x13x32 k3 64 valid": ((13, 13, 32), (3, 3, 32, 64), "VALID", True),
    "resnet20.stage1 32x32x16 k3 16 same": ((32, 32, 16), (3, 3, 16, 16), "SAME", True),
    "resnet20.stage2 16x16x32 k3 32 same": ((16, 16, 32), (3, 3, 32, 32), "SAME", True),
    "resnet20.stage3 8x8x64 k3 64 same": ((8, 8, 64), (3, 3, 64, 64), "SAME", True),
    "lenet5.conv2 14x14x6 k5 16 valid": ((14, 14, 6), (5, 5, 6, 16), "VALID", True),
}
# name: (input NHWC without batch, kind)
POOL_CASES = {
    "max 2x2 on 26x26x32 (mnist_cnn)": ((26, 26, 32), "max"),
    "avg 2x2 on 28x28x32 (flax_cnn)": ((28, 28, 32), "avg"),
    "avg 2x2 on 14x14x64 (flax_cnn)": ((14, 14, 64), "avg"),
}
DENSE_CASES = {
    "mnist_cnn.dense 5408->128": (5408, 128),
    "flax_cnn.dense 3136->256": (3136, 256),
}


def _pairs(padding, spatial, kernel):
    if padding == "VALID":
        return [(0, 0)] * len(spatial)
    return [((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel]   # stride 1 "same"


def conv_xla(x, k, pairs):
    return lax.conv_general_dilated(x, k, (1, 1), pairs, dimension_numbers=("NHWC", "HWIO", "NHWC"))


def conv_xla_nchw(x, k, pairs):
    y = lax.conv_general_dilated(x.transpose(0, 3, 1, 2), k.transpose(3, 2, 0, 1), (1, 1), pairs,
                                 dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return y.transpose(0, 2, 3, 1)


def conv_patches(x, k, pairs):
    kh, kw, c, f = k.shape
    p = lax.conv_general_dilated_patches(x, (kh, kw), (1, 1), pairs, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    # patches' feature axis is ordered (c, kh, kw)
    return p @ k.transpose(2, 0, 1, 3).reshape(c * kh * kw, f)


def conv_im2col(x, k, pairs):
    return conv_forms.conv_im2col(x, k, strides=(1, 1), padding=pairs, dilation=(1, 1))


def conv_im2col_vjp(x, k, pairs):
    return conv_forms.conv_im2col_vjp(x, k, strides=(1, 1), padding=pairs, dilation=(1, 1))


def conv_split_grad(x, k, pairs):
    return conv_forms.conv_split_grad(x, k, strides=(1, 1), padding=pairs, dilation=(1, 1),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))


CONV_IMPLS = {"xla": conv_xla, "xla_nchw": conv_xla_nchw, "patches": conv_patches, "im2col": conv_im2col,
              "im2col_vjp": conv_im2col_vjp, "split_grad": conv_split_grad}


def pool_reduce_window(x, kind):
    if kind == "max":
        return lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    return lax.reduce_window(x, 0.0, lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID") / 4.0


def pool_reshape(x, kind):
    n, h, w, c = x.shape
    r = x[:, :h // 2 * 2, :w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c)
    return r.max(axis=(2, 4)) if kind == "max" else r.mean(axis=(2, 4))


def pool_slices(x, kind):
    if kind == "max":
        return pool_forms.window_extreme(x, (1, 2, 2, 1))
    return pool_reshape(x, kind)


POOL_IMPLS = {"reduce_window": pool_reduce_window, "reshape": pool_reshape, "slices_vjp": pool_slices}


def time_call(fn, args, calls, repeats):
    """(compile+first call s, median s per call over `repeats` runs of `calls` calls)."""
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - t
    per_call = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(calls):
            out = fn(*args)
        jax.block_until_ready(out)
        per_call.append((time.perf_counter() - t) / calls)
    return first, statistics.median(per_call)


COMPILER_OPTIONS = None   # --compile-options cnnjax: cnnjax.train.cpu_speed.compile_options' XLA:CPU options, as fit's


def _grad_fn(layer, argnums):
    fn = jax.value_and_grad(lambda *a: jnp.sum(layer(*a) ** 2), argnums=argnums)
    return jax.jit(fn, compiler_options=COMPILER_OPTIONS)


def run(only, calls, repeats):
    rng = np.random.default_rng(0)
    rows = []
    if only in (None, "conv"):
        for name, (shape, kshape, padding, x_grad) in CONV_CASES.items():
            x = jnp.asarray(rng.standard_normal((BATCH, *shape)), jnp.float32)
            k = jnp.asarray(rng.standard_normal(kshape) / np.sqrt(np.prod(kshape[:3])), jnp.float32)
            pairs = _pairs(padding, shape[:2], kshape[:2])
            ref = None
            for impl, f in CONV_IMPLS.items():
                fn = _grad_fn(lambda k_, x_, f=f: f(x_, k_, pairs), (0, 1) if x_grad else 0)
                first, sec = time_call(fn, (k, x), calls, repeats)
                val = float(fn(k, x)[0])
                ref = val if ref is None else ref
                rows.append(dict(op="conv", case=name, impl=impl, first_s=first, ms=sec * 1e3,
                                 rel_diff=abs(val - ref) / abs(ref)))
    if only in (None, "pool"):
        for name, (shape, kind) in POOL_CASES.items():
            x = jnp.asarray(rng.standard_normal((BATCH, *shape)), jnp.float32)
            for impl, f in POOL_IMPLS.items():
                fn = _grad_fn(lambda x_, f=f: f(x_, kind), 0)
                first, sec = time_call(fn, (x,), calls, repeats)
                rows.append(dict(op="pool", case=name, impl=impl, first_s=first, ms=sec * 1e3, rel_diff=0.0))
    if only in (None, "dense"):
        for name, (d_in, d_out) in DENSE_CASES.items():
            x = jnp.asarray(rng.standard_normal((BATCH, d_in)), jnp.float32)
            w = jnp.asarray(rng.standard_normal((d_in, d_out)) / np.sqrt(d_in), jnp.float32)
            fn = _grad_fn(lambda w_, x_: x_ @ w_, (0, 1))
            first, sec = time_call(fn, (w, x), calls, repeats)
            rows.append(dict(op="dense", case=name, impl="matmul", first_s=first, ms=sec * 1e3, rel_diff=0.0))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=["conv", "pool", "dense"], default=None, help="one group of cases")
    p.add_argument("--calls", type=int, default=10, help="calls per timed run")
    p.add_argument("--repeats", type=int, default=5, help="timed runs; the median is reported")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    p.add_argument("--compile-options", choices=["default", "cnnjax"], default="default",
                   help="cnnjax: compile with cnnjax.train.cpu_speed.compile_options' XLA:CPU options (as fit does)")
    a = p.parse_args(argv)
    global COMPILER_OPTIONS
    if a.compile_options == "cnnjax":
        from cnnjax.train.cpu_speed.compile_options import cpu_compiler_options
        COMPILER_OPTIONS = cpu_compiler_options()
    load_before = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else None
    rows = run(a.only, a.calls, a.repeats)
    load_after = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else None
    print(f"# backend={jax.default_backend()} jax={jax.__version__} cpus={os.cpu_count()} "
          f"machine={platform.processor() or platform.machine()} batch={BATCH} load {load_before} -> {load_after} "
          f"compiler_options={COMPILER_OPTIONS}")
    print("| op | case | impl | ms / fwd+bwd | vs first impl | first call s | rel. diff of loss |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    base = {}
    for r in rows:
        base.setdefault(r["case"], r["ms"])
        print(f"| {r['op']} | {r['case']} | {r['impl']} | {r['ms']:.2f} | {base[r['case']] / r['ms']:.2f}x | "
              f"{r['first_s']:.2f} | {r['rel_diff']:.1e} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"backend": jax.default_backend(), "jax": jax.__version__, "load_before": load_before,
                       "load_after": load_after, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
