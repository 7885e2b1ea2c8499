"""How closely cnnjax's conv and pooling agree with independent references, over random configurations.

Draws legal configurations from ``cnnjax.testing.strategies`` and compares ``cnnjax.functional`` with the plain
NumPy loop (``cnnjax.testing.reference``, float64) and with TensorFlow's ``tf.nn.convolution`` / ``max_pool`` /
``avg_pool`` (float32; VALID/SAME only), printing the number of cases and the largest absolute error.
TensorFlow 2.21's CPU 3-D convolution with SAME padding gives wrong results in some cases where, on an axis with
a stride above 1, the input is narrower than the kernel or the stride is larger than the kernel
(``cnnjax.testing.tf_quirks``; the smallest case found is in tests/test_conv.py): those cases are counted on a
row of their own. Its pooling kernels showed no such errors.

    python experiments/reference_agreement.py --examples 300
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from cnnjax import functional as F  # noqa: E402
from cnnjax.testing import reference, strategies as cst, tf_quirks  # noqa: E402


def _last(a, fmt):
    return np.asarray(a) if fmt == "channels_last" else np.moveaxis(np.asarray(a), 1, -1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=200, help="random configurations per comparison")
    parser.add_argument("--no-tf", action="store_true", help="skip the TensorFlow comparisons")
    parser.add_argument("--show-worst", action="store_true", help="print the configuration of each worst case")
    args = parser.parse_args(argv)
    tf = None if args.no_tf else __import__("tensorflow")
    stats = {}

    worst_case = {}

    def record(name, err, case):
        n, worst = stats.get(name, (0, 0.0))
        stats[name] = (n + 1, max(worst, float(err)))
        if float(err) >= worst:
            worst_case[name] = case

    run = settings(max_examples=args.examples, deadline=None, database=None,
                   suppress_health_check=list(HealthCheck))

    @run
    @given(cst.conv_configs(max_size=8), st.integers(0, 2**31 - 1))
    def conv_cases(cfg, seed):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(cfg["input_shape"]).astype(np.float32)
        k = rng.standard_normal(cfg["kernel_shape"]).astype(np.float32)
        kw = {a: cfg[a] for a in ("strides", "padding", "dilation", "groups")}
        y = _last(F.conv(x, k, data_format=cfg["data_format"], precision="highest", **kw), cfg["data_format"])
        x_last = _last(x, cfg["data_format"])
        record("conv vs NumPy loop", np.max(np.abs(y - reference.conv(x_last, k, **kw)), initial=0), cfg)
        if tf is not None and cfg["groups"] == 1:
            # TF takes only VALID/SAME and no strides > 1 together with dilation > 1: SAME always fits
            pad = cfg["padding"] if isinstance(cfg["padding"], str) else "same"
            dil = cfg["dilation"] if max(cfg["strides"]) == 1 else 1
            y = _last(F.conv(x, k, strides=cfg["strides"], padding=pad, dilation=dil,
                             data_format=cfg["data_format"], precision="highest"), cfg["data_format"])
            t = tf.nn.convolution(x_last, k, strides=cfg["strides"], padding=pad.upper(), dilations=dil).numpy()
            bug = " (3-D SAME, the class TF's CPU kernel can get wrong)" if pad.lower() == "same" and (
                tf_quirks.conv3d_same_may_be_wrong(x_last.shape[1:-1], k.shape[:-2], cfg["strides"])) else ""
            record("conv vs tf.nn.convolution" + bug, np.max(np.abs(y - t), initial=0), dict(cfg, padding=pad, dilation=dil))

    @run
    @given(cst.pool_configs(max_size=8), st.sampled_from(["max", "avg", "min"]), st.integers(0, 2**31 - 1))
    def pool_cases(cfg, kind, seed):
        x = np.random.default_rng(seed).standard_normal(cfg["input_shape"]).astype(np.float32)
        kw = {a: cfg[a] for a in ("pool_size", "strides", "padding", "ceil_mode")}
        op = {"max": F.max_pool, "avg": F.avg_pool, "min": F.min_pool}[kind]
        y = _last(op(x, data_format=cfg["data_format"], **kw), cfg["data_format"])
        x_last = _last(x, cfg["data_format"])
        ref = {"max": reference.max_pool, "avg": reference.avg_pool, "min": reference.min_pool}[kind]
        record(f"{kind}_pool vs NumPy loop", np.max(np.abs(y - ref(x_last, **kw)), initial=0), cfg)
        if tf is not None and kind != "min" and isinstance(cfg["padding"], str) and not cfg["ceil_mode"]:
            tf_op = tf.nn.max_pool if kind == "max" else tf.nn.avg_pool
            t = tf_op(x_last, ksize=cfg["pool_size"], strides=cfg["strides"] or cfg["pool_size"],
                      padding=cfg["padding"].upper()).numpy()
            record(f"{kind}_pool vs tf.nn.{kind}_pool", np.max(np.abs(y - t), initial=0), cfg)

    start = time.perf_counter()
    conv_cases()
    pool_cases()
    print("| comparison | cases | largest abs error |\n| --- | --- | --- |")
    for name, (n, worst) in stats.items():
        print(f"| {name} | {n} | {worst:.2e} |")
    print(f"\n{time.perf_counter() - start:.0f} s")
    if args.show_worst:
        for name, case in worst_case.items():
            print(name, case)


if __name__ == "__main__":
    main()
