"""The loop form of a training run: per step, a ``lax.scan`` chunk or an unrolled chunk.

The three forms compute the same steps (to float rounding, not bit for bit: each is another XLA program):
``"step"`` dispatches one jitted step per batch; ``"scan"`` runs a chunk of steps in one jitted ``lax.scan``;
``"unroll"`` runs a short chunk (:func:`unroll_steps`, <= 8) as one jitted program with the steps unrolled, no
while loop. Which is fastest depends on the backend and on the model: on GPU/TPU the scan removes the per-step
dispatch and host work; on XLA:CPU it removes a fixed per-step cost too, but a scan whose body holds XLA
convolutions takes a slow path there (jax-ml/jax#12868), while an unrolled chunk does not.

:func:`rule` is what ``fit(loop="auto")`` takes, the same on every run of the same model on the same backend (so
two runs with one seed give the same bits): on an accelerator the scan; on a CPU the scan when the step keeps no
XLA convolution (:func:`xla_convolutions`: every convolution in the im2col form of :mod:`.conv_forms`, as in the
lecture's one-conv models), unrolled chunks when it keeps a few (up to ``UNROLL_MAX_CONVOLUTIONS``), and one step
per call for deeper models (ResNets), whose unrolled chunks compile slowly and run no faster. The measurements
behind the rule are in ``experiments/SPEED.md``.

``fit(loop="measure")`` times the forms instead (:func:`measure_loops`, on copies of the training state) and keeps
the fastest (:func:`choose`); two such runs can pick different forms on a noisy machine, and so end in other bits.
In a run of several processes, every decision the probe takes from its timings (whether to make a call, and the
choice) is process 0's (:func:`agreed_choice`), since each call is a collective.

Cost of the measurement: one compilation of each form (the step's, and the unrolled chunk's at the run's length,
are reused by the run) plus a few steps of each after its warm-up call (a form whose warm-up call already shows
it 3x slower than per-step training is not run again), and, where the short scan loses narrowly, one more
compilation (the run's, reused if the run then scans) and two calls of a scan at the run's length (each at most
``LONG_SCAN_SECONDS`` at the fastest form's rate). :func:`measure_step_and_scan` (for trainers with their own
step and scan) costs one per-step call, about ``PROBE_SECONDS`` of per-step calls (at least 2) and a scan of as
many steps: its compilation and one run, or two where the first is within 1.5x of the per-step form.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable

import jax
import numpy as np
from jax.extend.core import jaxprs_in_params

from . import conv_forms, swap

__all__ = ["rule", "xla_convolutions", "UNROLL_MAX_CONVOLUTIONS", "measure_loops", "measure_step_and_scan", "choose",
           "agreed_choice", "chunk_steps", "unroll_steps",
           "unroll_probe", "PROBE_STEPS", "SCAN_PROBE_STEPS", "PROBE_SECONDS", "SCAN_CONTENDS",
           "LONG_SCAN_SECONDS", "FORMS"]

FORMS = ("step", "scan", "unroll")

PROBE_STEPS = 4          # timed steps of the per-step form
SCAN_PROBE_STEPS = 2     # steps of the scan probe's call (a slow scan costs its warm-up call at most twice this)
COMPILE_ALLOWANCE_S = 10.0   # what a warm-up call may spend compiling before its run counts as slow
PROBE_SECONDS = 0.25     # what measure_step_and_scan aims to spend timing the per-step form
SCAN_CONTENDS = 1.5      # a short scan within this factor of the fastest form is timed again at the run's length
LONG_SCAN_SECONDS = 5.0  # ... unless one call of that length would take longer than this at the fastest rate
UNROLL_MAX_CONVOLUTIONS = 4   # rule(): a CPU step with more XLA convolutions than this runs one step per call


def rule(platform: str, convolutions: int) -> str:
    """The loop form of ``fit(loop="auto")`` for a step on `platform` that keeps `convolutions` XLA convolutions
    (:func:`xla_convolutions`): see the module docstring."""
    if platform != "cpu" or convolutions == 0:
        return "scan"
    return "unroll" if convolutions <= UNROLL_MAX_CONVOLUTIONS else "step"


def xla_convolutions(fn: Callable, *args, cpu_forms: bool = True) -> int:
    """How many convolutions of ``fn(*args)`` stay XLA convolutions: with `cpu_forms` (as
    :func:`.swap.with_cpu_forms` runs it), all but those in the im2col form; without, all. Traced only: `args`
    may be ``jax.ShapeDtypeStruct``."""
    closed = jax.make_jaxpr(fn)(*args)
    return _count_convolutions(closed.jaxpr, cpu_forms)


def _count_convolutions(jaxpr, cpu_forms: bool) -> int:
    """Convolutions of `jaxpr` that stay XLA convolutions; the swap reaches into jit bodies only, so inside
    other higher-order primitives (remat, scan, custom derivatives) every convolution counts."""
    count = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            form = (swap.conv_form_of(eqn.params, eqn.invars[0].aval.shape, eqn.invars[1].aval.shape)
                    if cpu_forms else None)
            count += getattr(form, "func", None) is not conv_forms.conv_im2col_vjp
        inner_forms = cpu_forms and eqn.primitive.name in swap.JIT_PRIMITIVES
        for inner in jaxprs_in_params(eqn.params):
            count += _count_convolutions(inner, inner_forms)
    return count


def _from_process0(value: int) -> int:
    """`value` as process 0 has it: in a multi-process run every probe call is a collective, so what is decided
    from each process's own timings (make a call or not, the choice) must be the same everywhere."""
    if jax.process_count() == 1:
        return int(value)
    from jax.experimental import multihost_utils
    return int(multihost_utils.broadcast_one_to_all(np.asarray(value, np.int32)))


def _agreed(flag: bool) -> bool:
    return bool(_from_process0(bool(flag)))


def agreed_choice(form: str) -> str:
    """The loop form process 0 chose (every process then runs the same programs); `form` in one process."""
    return FORMS[_from_process0(FORMS.index(form))]


def _fresh(placed):
    """A copy of the (possibly sharded) state, so donated buffers of the probe never touch the real one."""
    return jax.tree.map(lambda a: a.copy() if isinstance(a, jax.Array) else a, placed)


def measure_loops(strategy, placed, batches: Callable[[int], tuple], *, batch_size: int,
                  probe_steps: int = PROBE_STEPS, unroll: int | None = None, scan: int | None = None) -> dict:
    """Training images/s of each loop form on this machine, measured on copies of `placed`.

    batches(i) -> (images, labels) of probe batch i (numpy, one batch); batches 0 to max(probe_steps, unroll,
    scan - 1) are used. `unroll`: the unrolled chunk's length (that of the run, so its compilation is reused);
    None: not measured (nor where the strategy has no unrolled form).
    The scan is first timed over ``SCAN_PROBE_STEPS`` steps, which is enough to see XLA:CPU's slow scans of
    convolutions; a call that short also pays its fixed per-call cost over two steps only, so it reads low
    (an example is in experiments/SPEED.md). `scan`: the run's scan
    length; where the short scan loses, but by less than ``SCAN_CONTENDS``, and a call of that length would
    take at most ``LONG_SCAN_SECONDS`` at the fastest form's rate, the scan is timed again at that length (its
    compilation is the run's) and that figure is the one returned. (Where the short scan already wins, a
    longer one would only win by more.)
    Returns ``{"step": img/s, "scan": img/s[, "unroll": img/s], "scan_steps": steps of the scan figure,
    "seconds": total wall time of the probe}``.
    """
    t_begin = time.perf_counter()
    data = [batches(i) for i in range(max(probe_steps, unroll or 0) + 1)]

    state = _fresh(placed)
    state, m = strategy.train_step(state, *strategy.place_batch(*data[0]))      # compile + warm up
    jax.block_until_ready(m)
    t0 = time.perf_counter()
    for images, labels in data[1:]:
        state, m = strategy.train_step(state, *strategy.place_batch(images, labels))
    jax.block_until_ready(m)
    step_s = (time.perf_counter() - t0) / probe_steps
    del state

    scan_steps = min(probe_steps, SCAN_PROBE_STEPS)
    out = {"step": batch_size / step_s,
           "scan": batch_size / _time_chunk(strategy.train_chunk, strategy, placed, data[1:scan_steps + 1], step_s)}
    if unroll and getattr(strategy, "train_unrolled", None) is not None:
        out["unroll"] = batch_size / _time_chunk(strategy.train_unrolled, strategy, placed, data[1:unroll + 1],
                                                 step_s)
    out["scan_steps"] = scan_steps
    fastest = max(out["step"], out.get("unroll", 0.0))
    if _agreed(scan and scan > scan_steps and choose(out) != "scan" and out["scan"] * SCAN_CONTENDS >= fastest
               and scan * batch_size / fastest <= LONG_SCAN_SECONDS):
        long_data = (data + [batches(i) for i in range(len(data), scan)])[:scan]   # an epoch may hold just `scan`
        out["scan"] = batch_size / _time_chunk(strategy.train_chunk, strategy, placed, long_data, step_s)
        out["scan_steps"] = scan
    out["seconds"] = time.perf_counter() - t_begin
    return out


def _time_chunk(fn, strategy, placed, data, step_s) -> float:
    """Seconds per step of the chunk form `fn` on `data`: one compile + warm-up call, then one timed call.

    When the warm-up call, less COMPILE_ALLOWANCE_S for its compilation, already took over 3x what the per-step
    form (`step_s` a step) needs for these steps, the form cannot win and its second call is skipped: the
    figure returned is then that bound (XLA:CPU's slow scans of convolutions, e.g. ResNet-20's ~50x, would
    otherwise cost minutes).
    """
    stacked = tuple(np.stack([d[k] for d in data]) for k in (0, 1))
    state = _fresh(placed)
    t0 = time.perf_counter()
    state, m = fn(state, *strategy.place_batch(*stacked, stacked=True))      # compile + warm up
    jax.block_until_ready(m)
    run_bound = time.perf_counter() - t0 - COMPILE_ALLOWANCE_S
    if _agreed(run_bound > 3 * step_s * len(data)):
        return run_bound / len(data)
    t0 = time.perf_counter()
    state, m = fn(state, *strategy.place_batch(*stacked, stacked=True))
    jax.block_until_ready(m)
    return (time.perf_counter() - t0) / len(data)


def measure_step_and_scan(run_steps: Callable[[int], Any], scan_of: Callable[[int], Callable[[], Any]], *,
                          images_per_step: int, most_steps: int, seconds: float = PROBE_SECONDS) -> dict:
    """Training images/s of the per-step form and of a scan, for a trainer with its own step and scan functions
    (:func:`measure_loops` is `fit`'s).

    run_steps(k): dispatches k per-step calls (already compiled) and returns what to block on.
    scan_of(k): compiles a scan of k steps and returns a zero-argument callable that runs it once.
    One per-step call first (its time sets k: about `seconds` of steps, between 2 and `most_steps`), then k
    timed per-step calls, then the k-step scan: compiled (``compile_seconds``, apart), run once, and run a second
    time only when the first run (which may hold one-time costs) was within 1.5x of the per-step form, since
    otherwise it cannot win (XLA:CPU's slow scans of convolutions cost several steps' time each).
    Returns ``{"step": img/s, "scan": img/s, "steps": k, "seconds": wall time less compilation,
    "compile_seconds": the scan's compilation}``.
    """
    t_begin = time.perf_counter()
    jax.block_until_ready(run_steps(1))
    first = time.perf_counter() - t_begin
    k = int(min(most_steps, max(2, math.ceil(seconds / max(first, 1e-6)))))
    t0 = time.perf_counter()
    jax.block_until_ready(run_steps(k))
    step_s = (time.perf_counter() - t0) / k

    t0 = time.perf_counter()
    scan = scan_of(k)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(scan())
    scan_s = time.perf_counter() - t0
    if scan_s < 1.5 * step_s * k:
        t0 = time.perf_counter()
        jax.block_until_ready(scan())
        scan_s = min(scan_s, time.perf_counter() - t0)
    return {"step": images_per_step / step_s, "scan": images_per_step * k / scan_s, "steps": k,
            "seconds": time.perf_counter() - t_begin - compile_s, "compile_seconds": compile_s}


def choose(measured: dict) -> str:
    """The fastest form, where ties (within 5%) go to "step" (compiles once, reports progress per step) before
    "scan" (compiles in constant time, long chunks) before "unroll"."""
    best = "step"
    for form in ("scan", "unroll"):
        if form in measured and measured[form] > 1.05 * measured[best]:
            best = form
    return best


def unroll_steps(steps_per_epoch: int) -> int:
    """Steps per unrolled call: the largest divisor of `steps_per_epoch` up to 8 if it is at least 4 (468 -> 6),
    else 8 with one shorter call at each epoch's end. Compilation time grows with the length; 8 kept the Flax
    example CNN's under 5 s on the 2-core CPU."""
    return chunk_steps(steps_per_epoch, most=8, fewest=4)


def unroll_probe(steps_per_epoch: int) -> int | None:
    """The unrolled length :func:`measure_loops` should time for a run of `steps_per_epoch` steps an epoch (that
    of the run, :func:`unroll_steps`), or None when an epoch holds no more steps than one unrolled call."""
    unroll = unroll_steps(steps_per_epoch)
    return unroll if steps_per_epoch > unroll else None


def chunk_steps(steps_per_epoch: int, *, most: int = 100, fewest: int = 20) -> int:
    """Steps per scan call: the largest divisor of `steps_per_epoch` up to `most`, so every call has the same
    shape (one compilation) and the progress bar moves several times an epoch; when the only such divisors are
    below `fewest` (e.g. a prime number of steps), `most` steps per call and one shorter call at the end."""
    if steps_per_epoch <= most:
        return steps_per_epoch
    best = max(d for d in range(1, most + 1) if steps_per_epoch % d == 0)
    return best if best >= fewest else most
