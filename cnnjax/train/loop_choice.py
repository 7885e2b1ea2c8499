"""Which loop form trains fastest on this machine: measured at the start of `fit(loop="auto")`, not assumed.

The two forms compute the same steps: ``"step"`` dispatches one jitted step per batch; ``"scan"`` runs a chunk
of steps in one jitted ``lax.scan``. Which is faster depends on the backend and on the model: on GPU/TPU the scan
removes the per-step dispatch and host work (the anchors in ../shared/anchors/RESULTS.md: 336k vs 27.7k
images/s on an H100); on XLA:CPU it removed a fixed per-step cost for the lecture's ``mnist_cnn`` (5,222 vs
2,689 images/s, experiments/SPEED.md), but a scan whose body holds XLA convolutions takes a slow path there
(jax-ml/jax#12868: 6.5-7x slower for the Flax example CNN). So :func:`measure_loops` times both on copies of
the training state, with real batches of the run, and :func:`choose` keeps the faster one.

Cost: one compilation of each form (the step's is reused by a "step" run) plus ``probe_steps`` steps of each
form after its warm-up call; the training state itself is not touched.
"""
from __future__ import annotations

import time
from typing import Callable

import jax
import numpy as np

__all__ = ["measure_loops", "choose", "chunk_steps", "PROBE_STEPS"]

PROBE_STEPS = 4          # timed steps per form; the scan probe is one call of this many steps


def _fresh(placed):
    """A copy of the (possibly sharded) state, so donated buffers of the probe never touch the real one."""
    return jax.tree.map(lambda a: a.copy() if isinstance(a, jax.Array) else a, placed)


def measure_loops(strategy, placed, batches: Callable[[int], tuple], *, batch_size: int,
                  probe_steps: int = PROBE_STEPS) -> dict:
    """Training images/s of each loop form on this machine, measured on copies of `placed`.

    batches(i) -> (images, labels) of probe batch i (numpy, one batch); batches 0..probe_steps are used.
    Returns ``{"step": img/s, "scan": img/s, "seconds": total wall time of the probe}``.
    """
    t_begin = time.perf_counter()
    data = [batches(i) for i in range(probe_steps + 1)]

    state = _fresh(placed)
    state, m = strategy.train_step(state, *strategy.place_batch(*data[0]))      # compile + warm up
    jax.block_until_ready(m)
    t0 = time.perf_counter()
    for images, labels in data[1:]:
        state, m = strategy.train_step(state, *strategy.place_batch(images, labels))
    jax.block_until_ready(m)
    step_s = (time.perf_counter() - t0) / probe_steps
    del state

    stacked = tuple(np.stack([d[k] for d in data[1:]]) for k in (0, 1))
    state = _fresh(placed)
    state, m = strategy.train_chunk(state, *strategy.place_batch(*stacked, stacked=True))   # compile + warm up
    jax.block_until_ready(m)
    t0 = time.perf_counter()
    state, m = strategy.train_chunk(state, *strategy.place_batch(*stacked, stacked=True))
    jax.block_until_ready(m)
    scan_s = (time.perf_counter() - t0) / probe_steps
    del state
    return {"step": batch_size / step_s, "scan": batch_size / scan_s, "seconds": time.perf_counter() - t_begin}


def choose(measured: dict) -> str:
    """The faster form; a tie (within 5%) goes to "step", which compiles once and reports progress per step."""
    return "scan" if measured["scan"] > 1.05 * measured["step"] else "step"


def chunk_steps(steps_per_epoch: int, *, most: int = 100, fewest: int = 20) -> int:
    """Steps per scan call: the largest divisor of `steps_per_epoch` up to `most`, so every call has the same
    shape (one compilation) and the progress bar moves several times an epoch; when the only such divisors are
    below `fewest` (e.g. a prime number of steps), `most` steps per call and one shorter call at the end."""
    if steps_per_epoch <= most:
        return steps_per_epoch
    best = max(d for d in range(1, most + 1) if steps_per_epoch % d == 0)
    return best if best >= fewest else most
