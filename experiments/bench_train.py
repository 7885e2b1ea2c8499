"""Training throughput: one jitted step per batch ("step") against K steps in one jitted lax.scan ("scan").

The figures that showed that the best loop form on a CPU depends on the model (`fit(loop="auto")` now follows a rule
of how many XLA convolutions the step keeps, and `fit(loop="measure")` times the forms:
cnnjax/train/cpu_speed/loop_choice.py). It times steady-state
training steps (compile excluded: one warm-up call of each form first) of a `cnnjax.models` model on random
data of the model's input shape, Adam 1e-3, float32 unless --dtype is given.

    python experiments/bench_train.py --model mnist_cnn --batch-size 128 --steps 40 --repeats 3

Prints `loop  images/s (mean ± std over repeats)`. Results on this project's 2-core CPU, jax 0.10.2, quiet machine
(2026-11-23): mnist_cnn batch 128: step 3,291 ± 121, scan 5,388 ± 503; fashion_cnn:
step 1,337 ± 62, scan 185 ± 5; resnet20 batch 32: step 116 ± 2, scan 8 ± 0 images/s. Convolution-heavy scans are
slow on XLA:CPU (jax-ml/jax#12868) and others are not. The step is fit's (on a CPU with the XLA:CPU forms swapped
into the loss, cnnjax/train/cpu_speed/swap.py).
"""
from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np

from cnnjax import models
from cnnjax.train import create_state, make_optimizer, make_train_chunk, make_train_step


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mnist_cnn", help="a name from cnnjax.models.names()")
    p.add_argument("--batch-size", type=int, default=128, help="images per step")
    p.add_argument("--steps", type=int, default=40, help="steps per timed run (= scan length K)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per loop form")
    p.add_argument("--dtype", default=None, help="compute dtype, e.g. bfloat16")
    p.add_argument("--loops", nargs="+", default=["step", "scan"], choices=["step", "scan"])
    a = p.parse_args(argv)

    model = models.get(a.model, **({"dtype": a.dtype} if a.dtype else {}))
    shape = models.input_shape(a.model)
    tx = make_optimizer("adam", 1e-3)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (a.steps, a.batch_size, *shape), dtype=np.uint8)
    y = rng.integers(0, 10, (a.steps, a.batch_size)).astype(np.int32)
    step = make_train_step(model, tx, cpu_forms=jax.default_backend() == "cpu")
    forms = {"step": jax.jit(step, donate_argnums=0), "scan": jax.jit(make_train_chunk(step), donate_argnums=0)}
    print(f"# {a.model} batch {a.batch_size} K={a.steps} backend={jax.default_backend()} "
          f"devices={jax.device_count()} jax={jax.__version__}")
    for loop in a.loops:
        state = create_state(model, tx, input_shape=shape, key=jax.random.PRNGKey(0))
        xs, ys = jax.device_put(x), jax.device_put(y)
        fn = forms[loop]

        def run(state):
            if loop == "scan":
                state, m = fn(state, xs, ys)
            else:
                for i in range(a.steps):
                    state, m = fn(state, xs[i], ys[i])
            jax.block_until_ready(m)
            return state

        t = time.perf_counter()
        state = run(state)                       # compile + first run
        compile_s = time.perf_counter() - t
        rates = []
        for _ in range(a.repeats):
            t = time.perf_counter()
            state = run(state)
            rates.append(a.steps * a.batch_size / (time.perf_counter() - t))
        sd = statistics.stdev(rates) if len(rates) > 1 else 0.0
        print(f"{loop:5s} {statistics.mean(rates):9.0f} ± {sd:6.0f} images/s   (first run incl. compile "
              f"{compile_s:.1f} s)")


if __name__ == "__main__":
    main()
