"""Training steps of each parallel mode (`none`, `pmap`, `shard`) on forced CPU devices, with XLA:CPU's compile
options on and off (`cnnjax/train/cpu_speed/compile_options.py`).

Each (mode, options) pair runs in its own process, since the options are decided once per process
(``CNNJAX_XLA_CPU_OPTIONS=0`` turns them off) and the device count must be set before jax loads
(``XLA_FLAGS=--xla_force_host_platform_device_count``). The pairs are interleaved over ``--rounds`` rounds, the
order of on/off flipped each round, so a machine that drifts does not favour one side. A child times
``Strategy.train_step`` (compile and two warm-up steps excluded; the batches placed beforehand, as ``fit``'s
prefetch does) over ``--steps`` steps, ``--repeats`` times, and reports the median images/s.

    python experiments/bench_parallel.py --model mnist_cnn2 --devices 2 --steps 20 --repeats 3 --rounds 2

Prints a markdown table (mode, options, images/s of each round, median) and, with ``--out``, writes it as JSON.
On a 2-core machine forced devices share the two cores: the figures compare the modes' programs, not
data-parallel scaling.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

MODES = ("none", "pmap", "shard")


def child(a) -> dict:
    import jax
    import numpy as np

    from cnnjax import models
    from cnnjax.train import create_state, make_optimizer, make_strategy

    model, shape = models.get(a.model), models.input_shape(a.model)
    tx = make_optimizer("adam", 1e-3)
    strategy = make_strategy(a.mode, model, tx)
    placed = strategy.place_state(create_state(model, tx, input_shape=shape, key=jax.random.PRNGKey(0)))
    rng = np.random.default_rng(0)
    batches = [strategy.place_batch(rng.integers(0, 256, (a.batch_size, *shape), dtype=np.uint8),
                                    rng.integers(0, 10, a.batch_size).astype(np.int32)) for _ in range(a.steps)]
    for x, y in batches[:3]:                     # compile + 2 warm-up steps
        placed, m = strategy.train_step(placed, x, y)
    jax.block_until_ready(m)
    rates = []
    for _ in range(a.repeats):
        t = time.perf_counter()
        for x, y in batches:
            placed, m = strategy.train_step(placed, x, y)
        jax.block_until_ready((placed, m))
        rates.append(a.steps * a.batch_size / (time.perf_counter() - t))
    from _common import machine

    return {"mode": a.mode, "devices": jax.device_count(), "compiler_options": strategy.compiler_options,
            "machine": machine(),
            "img_s": statistics.median(rates), "repeats": rates}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mnist_cnn2", help="a name from cnnjax.models.names()")
    p.add_argument("--devices", type=int, default=2, help="forced CPU devices")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--batch-size", type=int, default=128, help="global images per step")
    p.add_argument("--steps", type=int, default=20, help="steps per timed run")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per process (their median is reported)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds of every (mode, options) pair")
    p.add_argument("--out", help="write the table as JSON here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", default="none", choices=MODES, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    for name in ("devices", "batch_size", "steps", "repeats", "rounds"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(a, name)}")
    if a.batch_size % a.devices:
        p.error(f"--batch-size {a.batch_size} is not divisible by --devices {a.devices}")
    if a.child:
        print("RESULT " + json.dumps(child(a)))
        return
    rows, options = {}, {}
    for r in range(a.rounds):
        for on in ((True, False) if r % 2 == 0 else (False, True)):
            for mode in a.modes:
                env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={a.devices}",
                           CNNJAX_XLA_CPU_OPTIONS="1" if on else "0", JAX_PLATFORMS="cpu")
                cmd = [sys.executable, __file__, "--child", "--mode", mode, "--model", a.model,
                       "--batch-size", str(a.batch_size), "--steps", str(a.steps), "--repeats", str(a.repeats)]
                out = subprocess.run(cmd, env=env, capture_output=True, text=True)
                if out.returncode:
                    sys.exit(f"bench_parallel: {mode} with options {'on' if on else 'off'} failed:\n"
                             f"{out.stderr[-3000:]}")
                res = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))[7:])
                if on and res["compiler_options"] is None:
                    print(f"note: {mode}: this jaxlib takes no compile options; 'on' runs jax's defaults",
                          file=sys.stderr)
                rows.setdefault((mode, on), []).append(res["img_s"])
                options[(mode, on)], where = res["compiler_options"], res["machine"]
                print(f"round {r + 1}: {mode:5s} options {'on ' if on else 'off'} {res['img_s']:8.0f} img/s",
                      file=sys.stderr, flush=True)
    print(f"{a.model}, batch {a.batch_size}, {a.devices} forced CPU devices ({where}); img/s, median of "
          f"{a.repeats} x {a.steps} steps per process\n")
    print("| mode | compile options | " + " | ".join(f"round {r + 1}" for r in range(a.rounds))
          + " | median | on / off |")
    print("| --- | --- | " + " | ".join("---:" for _ in range(a.rounds)) + " | ---: | ---: |")
    table = []
    for mode in a.modes:
        for on in (True, False):
            got = rows[(mode, on)]
            ratio = statistics.median(rows[(mode, True)]) / statistics.median(rows[(mode, False)])
            print(f"| {mode} | {'on' if on else 'off'} | " + " | ".join(f"{v:,.0f}" for v in got)
                  + f" | {statistics.median(got):,.0f} | {f'{ratio:.2f}x' if on else ''} |")
            table.append({"mode": mode, "options": on, "img_s": got, "median": statistics.median(got),
                          "compiler_options": options[(mode, on)]})
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"model": a.model, "batch_size": a.batch_size, "devices": a.devices, "steps": a.steps,
                       "repeats": a.repeats, "machine": where, "rows": table}, f, indent=1)


if __name__ == "__main__":
    main()
