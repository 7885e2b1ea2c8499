"""ResNet-20's convolutions on the CPU, part by part: forward, input gradient and kernel gradient in XLA (as
``fit`` compiles them: ``compile_options.jit``), against PyTorch's forward and forward + backward of the same
layer (NCHW, its default; ``padding=1``, which for a stride-2 layer pads 1 on both sides where "same" pads 0
and 1: the same output size, one more row and column of zeros). Batch 128, float32, ms per call: the median
of ``--repeats`` runs of ``--calls`` calls after one warm-up call, device-synchronised.

It answers where a ResNet-20 training step's convolution time goes (``experiments/SPEED.md``): the forward,
the input gradient (for a stride-2 layer XLA's transpose is a convolution with ``lhs_dilation``), or the
kernel gradient (``xla``: XLA's own; ``split``: cnnjax's sum over batch chunks, what ``fit`` runs on a CPU).
The last line sums the parts over the layers as often as resnet20 has each. ``--step`` also times cnnjax's
whole ResNet-20 training step, to set beside that sum, and counts what XLA compiled it to (thunks, and the
megabytes its elementwise loop fusions write). ``--torch-profile`` also prints ``torch.profiler``'s table for
five training steps of the PyTorch ResNet-20 peer (``bench_peers.torch_resnet20``), for the same split on
PyTorch's side.

    python experiments/bench_conv_parts.py
    python experiments/bench_conv_parts.py --calls 10 --repeats 5 --step --torch-profile

Run it with the environment ``bench_speed.py --malloc keep`` gives its rows
(``cnnjax.train.cpu_speed.host_memory.ENVIRONMENT``) to compare with that table's PyTorch figures.
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import os
import re
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from bench_cpu_ops import time_call
from cnnjax import shapes
from cnnjax.cli.arguments import int_at_least as _int_at_least
from cnnjax.train.cpu_speed import conv_forms
from cnnjax.train.cpu_speed.compile_options import jit

BATCH = 128
DN = ("NHWC", "HWIO", "NHWC")
# name: (input height = width, in channels, out channels, stride, how many resnet20 has); every layer is 3x3
# "same", as in resnet20. Its 19th convolution, the 3 -> 16 stem, gets the im2col form and is left out.
LAYERS = {
    "stage1 32x32x16 -> 16": (32, 16, 16, 1, 6),
    "stage2 entry 32x32x16 -> 32, stride 2": (32, 16, 32, 2, 1),
    "stage2 16x16x32 -> 32": (16, 32, 32, 1, 5),
    "stage3 entry 16x16x32 -> 64, stride 2": (16, 32, 64, 2, 1),
    "stage3 8x8x64 -> 64": (8, 64, 64, 1, 5),
}


def same_padding(n: int, stride: int, k: int = 3) -> tuple[int, int]:
    """TensorFlow's "same" padding of one axis (what cnnjax's conv uses)."""
    return shapes.padding_amounts(n, k, strides=stride, padding="same")


def median_ms(fn, calls: int, repeats: int) -> float:
    """ms per call of ``fn()`` (jax or torch), as ``bench_cpu_ops.time_call`` times it."""
    return time_call(fn, (), calls, repeats)[1] * 1e3


def jax_parts(h, c, f, stride, calls, repeats) -> dict:
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((BATCH, h, h, c), np.float32))
    k = jnp.asarray(rng.standard_normal((3, 3, c, f), np.float32) * 0.1)
    pads = (same_padding(h, stride),) * 2
    kw = dict(strides=(stride, stride), padding=pads, dilation=(1, 1), dimension_numbers=DN)
    conv = lambda x_, k_: conv_forms.conv_xla(x_, k_, **kw)                        # noqa: E731
    split = lambda x_, k_: conv_forms.conv_split_grad(x_, k_, **kw)                # noqa: E731
    dy = jnp.asarray(rng.standard_normal(conv(x, k).shape, np.float32))
    fwd = jit(conv)
    dx = jit(lambda x_, k_, dy_: jax.vjp(lambda a: conv(a, k_), x_)[1](dy_)[0])
    dk = jit(lambda x_, k_, dy_: jax.vjp(lambda b: conv(x_, b), k_)[1](dy_)[0])
    dk_split = jit(lambda x_, k_, dy_: jax.vjp(lambda b: split(x_, b), k_)[1](dy_)[0])
    np.testing.assert_allclose(dk(x, k, dy), dk_split(x, k, dy), rtol=1e-3, atol=1e-2)
    return {"forward": median_ms(lambda: fwd(x, k), calls, repeats),
            "input grad": median_ms(lambda: dx(x, k, dy), calls, repeats),
            "kernel grad (xla)": median_ms(lambda: dk(x, k, dy), calls, repeats),
            "kernel grad (split)": median_ms(lambda: dk_split(x, k, dy), calls, repeats)}


def torch_parts(h, c, f, stride, calls, repeats) -> dict:
    import torch
    x = torch.randn(BATCH, c, h, h, requires_grad=True)
    w = (torch.randn(f, c, 3, 3) * 0.1).requires_grad_(True)
    conv = lambda: torch.nn.functional.conv2d(x, w, stride=stride, padding=1)   # noqa: E731
    dy = torch.randn_like(conv())

    def forward():
        with torch.no_grad():
            return conv()

    def forward_backward():
        x.grad = w.grad = None
        conv().backward(dy)

    return {"forward": median_ms(forward, calls, repeats),          # torch on the CPU returns when it is done
            "forward + backward": median_ms(forward_backward, calls, repeats)}


def torch_profile(steps: int = 5) -> str:
    import torch
    from torch.profiler import ProfilerActivity, profile

    import bench_peers
    model = bench_peers.torch_resnet20()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(BATCH, 3, 32, 32), torch.randint(0, 10, (BATCH,))

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(3):
        step()
    t = time.perf_counter()
    for _ in range(10):
        step()
    per_step = (time.perf_counter() - t) / 10 * 1e3
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
    return f"PyTorch ResNet-20 step: {per_step:.1f} ms (10 steps, unprofiled); profile of {steps} steps:\n{table}"


def network_sums(rows: dict, torch_rows: dict | None = None) -> tuple[float, float | None]:
    """ms over resnet20's convolutions: each layer's forward + input grad + split kernel grad (what ``fit``
    runs), and PyTorch's forward + backward, times how many of that layer the network has (``LAYERS``)."""
    jax_ms = sum(LAYERS[name][-1] * (row["forward"] + row["input grad"] + row["kernel grad (split)"])
                 for name, row in rows.items())
    torch_ms = None if torch_rows is None else sum(LAYERS[name][-1] * row["forward + backward"]
                                                   for name, row in torch_rows.items())
    return jax_ms, torch_ms


def compiled_stats(hlo_text: str) -> dict:
    """Counts of an optimised HLO module's entry computation (one thunk each on XLA:CPU): convolutions, loop
    fusions, YNNPACK fusions, and the megabytes the loop fusions write (their float32 outputs, every one of a
    multi-output fusion's)."""
    entry = hlo_text[hlo_text.index("ENTRY"):]
    stats = {"convolutions": 0, "loop fusions": 0, "YNNPACK fusions": 0, "loop fusion output MB": 0.0}
    for line in entry.splitlines():
        if " convolution(" in line:
            stats["convolutions"] += 1
        elif '"kind":"__ynn_fusion"' in line:
            stats["YNNPACK fusions"] += 1
        elif "kind=kLoop" in line:
            stats["loop fusions"] += 1
            result = line.split(" fusion(")[0].split(" = ", 1)[-1]        # "f32[..]{..}" or "(f32[..], ..)"
            for dims in re.findall(r"f32\[([\d,]*)\]", result):
                stats["loop fusion output MB"] += 4 * math.prod(int(d) for d in dims.split(",") if d) / 1e6
    return stats


def step_report(repeats: int, steps: int = 10, batch: int = BATCH) -> str:
    """cnnjax's ResNet-20 training step (``make_train_step``, compiled as fit compiles it) on ``batch`` images:
    ms a step, the median of ``repeats`` runs of ``steps`` steps, and :func:`compiled_stats` of its program."""
    import bench_peers
    from cnnjax.train import create_state, make_train_step
    spec = bench_peers.SPECS["resnet20"]
    model, tx = bench_peers.cnnjax_model("resnet20"), bench_peers.optimizer(spec)
    state = create_state(model, tx, input_shape=spec["input_shape"], key=jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.random((batch, *spec["input_shape"]), np.float32))
    y = jnp.asarray(rng.integers(0, 10, batch))
    compiled = jit(make_train_step(model, tx, cpu_forms=jax.default_backend() == "cpu"), donate_argnums=0).lower(state, x, y).compile()
    stats = compiled_stats(compiled.as_text())
    for _ in range(3):
        state, metrics = compiled(state, x, y)
    jax.block_until_ready(metrics)
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps):
            state, metrics = compiled(state, x, y)
        jax.block_until_ready(metrics)
        runs.append((time.perf_counter() - t) / steps * 1e3)
    counts = ", ".join(f"{k} {v:.0f}" for k, v in stats.items())
    return f"cnnjax ResNet-20 step: {statistics.median(runs):.1f} ms (median of {repeats} x {steps}); compiled: {counts}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=_int_at_least("--calls", 1), default=20, help="calls per timed run (default 20)")
    ap.add_argument("--repeats", type=_int_at_least("--repeats", 1), default=5, help="timed runs; the median is shown (default 5)")
    ap.add_argument("--no-torch", action="store_true", help="leave out the PyTorch columns")
    ap.add_argument("--step", action="store_true",
                    help="also time cnnjax's whole ResNet-20 training step and count what XLA compiled it to")
    ap.add_argument("--torch-profile", action="store_true",
                    help="also profile five steps of the PyTorch ResNet-20 peer")
    args = ap.parse_args(argv)
    if importlib.util.find_spec("torch") is None and not args.no_torch:
        print("(PyTorch is not installed: its columns and --torch-profile are left out)")
        args.no_torch = True
    if not args.no_torch:
        import torch
        torch.set_num_threads(os.cpu_count())     # as bench_speed.py's PyTorch rows
    cols = ["forward", "input grad", "kernel grad (xla)", "kernel grad (split)"]
    tcols = [] if args.no_torch else ["torch forward", "torch forward + backward"]
    print(f"jax {jax.__version__}, backend {jax.default_backend()}; batch {BATCH}, ms per call, median of "
          f"{args.repeats} x {args.calls} calls")
    print("| layer | " + " | ".join(cols + tcols) + " |")
    print("| --- |" + " ---: |" * (len(cols) + len(tcols)))
    rows, torch_rows = {}, ({} if tcols else None)
    for name, (h, c, f, s, count) in LAYERS.items():
        rows[name] = row = jax_parts(h, c, f, s, args.calls, args.repeats)
        cells = [f"{row[k]:.2f}" for k in cols]
        if tcols:
            torch_rows[name] = t = torch_parts(h, c, f, s, args.calls, args.repeats)
            cells += [f"{t['forward']:.2f}", f"{t['forward + backward']:.2f}"]
        print(f"| {name} (x{count}) | " + " | ".join(cells) + " |", flush=True)
    jax_ms, torch_ms = network_sums(rows, torch_rows)
    n = sum(layer[-1] for layer in LAYERS.values())
    print(f"\nSum over the {n} layers (each row times its count): forward + input grad + split kernel grad "
          f"{jax_ms:.1f} ms" + (f", PyTorch forward + backward {torch_ms:.1f} ms" if tcols else ""))
    if args.step:
        print()
        print(step_report(args.repeats))
    if args.torch_profile and not args.no_torch:
        print()
        print(torch_profile())


if __name__ == "__main__":
    main()
