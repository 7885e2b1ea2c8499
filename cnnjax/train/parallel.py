"""Where the steps run: one device (`jit`), `pmap` over local devices, or sharded `jit` over a device mesh.

A `Strategy` owns the compiled train step, the K-step `lax.scan` chunk and the eval step of one mode, and knows
how to place the state and a global batch on its devices. The global batch of a step is the same in every mode
(rows ``idx[t*B:(t+1)*B]`` of the epoch's permutation), so the modes compute the same mathematics:

- ``none``: ``jax.jit(step, donate_argnums=0)`` on the default device.
- ``pmap``: state replicated with a leading device axis; the batch [B, ...] is split into [n, B/n, ...];
  gradients, loss, accuracy and BatchNorm statistics are ``lax.pmean``-ed over axis "data". BatchNorm inside the
  model still normalises each device's B/n rows with that device's statistics (the classic pmap behaviour), so a
  BatchNorm model differs slightly from one device; the sharded mode does not have this difference.
- ``shard``: a 1-D ``Mesh`` over all (global) devices with axis "data"; state replicated
  (``placement.replicated``), batch rows split (``placement.data_sharding``: ``P("data")``); XLA inserts the
  gradient all-reduce. This is the form JAX recommends and the one that spans several processes
  (`distributed.py`).

On a CPU the steps of every mode take XLA:CPU's compile options (``compile_options.py``: convolutions by XLA's
kernels, not YNNPACK's); ``pmap``'s are compiled ahead of time for that, since ``jax.pmap`` has no such argument.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import partial
from typing import Callable

import jax
import numpy as np
from jax.sharding import Mesh

from . import ensemble as _ensemble
from .cpu_speed.compile_options import compiler_options_for
from .cpu_speed.compile_options import jit as _jit
from .cpu_speed.compile_options import pmap as _pmap
from .placement import data_sharding, global_array, replicated
from .steps import make_eval_step, make_train_chunk, make_train_step, with_gather

PARALLEL_MODES = ("none", "pmap", "shard")


@dataclass
class Strategy:
    name: str
    n_devices: int                       # data-parallel width: the batch size must be divisible by it
    train_step: Callable                 # (state, images[B..], labels[B]) -> (state, metrics)
    train_chunk: Callable                # (state, images[K,B..], labels[K,B]) -> (state, metrics[K])
    eval_step: Callable                  # (state, images, labels, weights) -> sums
    place_state: Callable                # canonical state -> placed state
    canonical: Callable                  # placed state -> one copy (for checkpoints and the caller)
    place_batch: Callable                # (*numpy arrays [B..] or [K,B..], stacked=bool) -> placed arrays
    note: str = ""
    train_unrolled: Callable | None = None   # as train_chunk, with the K steps unrolled (no while loop)
    compiler_options: dict | None = None     # the XLA options its steps compile with (compile_options.py)
    cpu_forms: bool = False                  # whether its steps use cpu_speed.with_cpu_forms
    # With the dataset kept on the device (None where the mode cannot): as train_step / train_chunk /
    # train_unrolled, taking (state, images_all, labels_all, rows) and gathering the batch inside the program.
    data_step: Callable | None = None
    data_chunk: Callable | None = None
    data_unrolled: Callable | None = None
    place_data: Callable | None = None       # (images, labels) numpy -> the arrays the data_* functions take
    place_rows: Callable | None = None       # (rows int [B] or [K, B], stacked=bool) -> placed rows
    data_on_device: bool = False             # whether fit uses the data_* functions (fit decides)


def _first(tree):
    return jax.tree.map(lambda x: x[0], tree)


def make_strategy(kind: str, model, tx, *, label_smoothing: float = 0.0, dtype=None,
                  ensemble: bool = False, cpu_forms: bool | None = None, augment=None, tta=None) -> Strategy:
    """Build the `Strategy` for `kind` in PARALLEL_MODES; `ensemble` vmaps every step over a member axis.

    `cpu_forms`: the steps run their convolutions and max/min pools in XLA:CPU's faster forms
    (`cpu_speed.with_cpu_forms`); None: where the steps run on CPU devices, except in the sharded mode (the
    swapped loss sees the global batch there, and the split kernel gradient's batch chunks would cut across
    the devices' shards). `augment` goes to the train step, `tta` to the eval step (see steps.py)."""
    if kind not in PARALLEL_MODES:
        raise ValueError(f"make_strategy: unknown parallel mode {kind!r}; valid: {', '.join(PARALLEL_MODES)}.")
    if ensemble and kind != "none":
        raise ValueError(f"make_strategy: ensembles run on one device; got parallel={kind!r} with an ensemble. "
                         "Use parallel='none' or train the members separately.")
    if jax.process_count() > 1 and kind != "shard":
        raise ValueError(f"make_strategy: {jax.process_count()} processes need parallel='shard' "
                         f"(got {kind!r}); the sharded mode is the one that spans hosts.")
    if cpu_forms is None:
        cpu_forms = kind != "shard" and jax.local_devices()[0].platform == "cpu"
    elif not isinstance(cpu_forms, (bool, np.bool_)):
        raise TypeError(f"make_strategy: cpu_forms must be True, False or None, got {cpu_forms!r}.")
    kw = dict(label_smoothing=label_smoothing, dtype=dtype, cpu_forms=bool(cpu_forms), augment=augment, tta=tta)
    if kind == "none":
        strategy = _single_strategy(model, tx, kw, ensemble)
    elif kind == "pmap":
        strategy = _pmap_strategy(model, tx, kw)
    else:
        strategy = _shard_strategy(model, tx, kw)
    strategy.cpu_forms = kw["cpu_forms"]
    return strategy


def _train_kw(kw: dict) -> dict:
    return {k: v for k, v in kw.items() if k != "tta"}


def _eval_kw(kw: dict) -> dict:
    return {k: v for k, v in kw.items() if k != "augment"}


def _single_strategy(model, tx, kw, ensemble) -> Strategy:
    step = make_train_step(model, tx, **_train_kw(kw))
    ev = make_eval_step(model, **_eval_kw(kw))
    if ensemble:
        step, ev = _ensemble.vmap_train_step(step), _ensemble.vmap_eval_step(ev)
    device = jax.local_devices()[0]
    jit = partial(_jit, platform=device.platform)   # jax.jit, with XLA:CPU's options on a CPU
    put = lambda *xs, stacked=False: tuple(jax.device_put(x, device) for x in xs)  # noqa: E731
    return Strategy("none", 1, jit(step, donate_argnums=0),
                    jit(make_train_chunk(step), donate_argnums=0), jit(ev),
                    lambda s: jax.device_put(s, device), lambda s: s, put,
                    train_unrolled=jit(make_train_chunk(step, unroll=True), donate_argnums=0),
                    compiler_options=compiler_options_for(device.platform),
                    data_step=jit(with_gather(step), donate_argnums=0),
                    data_chunk=jit(with_gather(make_train_chunk(step)), donate_argnums=0),
                    data_unrolled=jit(with_gather(make_train_chunk(step, unroll=True)), donate_argnums=0),
                    place_data=lambda *xs: put(*(np.asarray(x) for x in xs)),
                    place_rows=lambda rows, stacked=False: put(np.asarray(rows, np.int32))[0])


def _pmap_strategy(model, tx, kw) -> Strategy:
    devices = jax.local_devices()
    n = len(devices)
    step = make_train_step(model, tx, axis_name="data", **_train_kw(kw))
    ev = make_eval_step(model, axis_name="data", **_eval_kw(kw))
    # Leading-axis-over-devices layout; pmap takes such arrays as they are (it is built on jit + shard_map
    # since jax 0.10), and older pmap accepts them as well.
    stacked_sharding = data_sharding(Mesh(np.array(devices), ("data",)))
    sharding_for = lambda shape: stacked_sharding  # noqa: E731

    def place_state(state):
        def rep(x):
            stacked = np.broadcast_to(np.asarray(x), (n, *np.shape(x)))
            return jax.device_put(stacked, sharding_for(stacked.shape))
        return jax.tree.map(rep, state)

    def place_batch(*arrays, stacked=False):
        out = []
        for a in arrays:
            a = np.asarray(a)
            if stacked:   # [K, B, ...] -> [n, K, B/n, ...]
                a = np.swapaxes(a.reshape(a.shape[0], n, a.shape[1] // n, *a.shape[2:]), 0, 1)
            else:         # [B, ...] -> [n, B/n, ...]
                a = a.reshape(n, a.shape[0] // n, *a.shape[1:])
            out.append(jax.device_put(a, sharding_for(a.shape)))
        return tuple(out)

    pmap = partial(_pmap, platform=devices[0].platform, axis_name="data")   # with XLA:CPU's options on a CPU
    pstep = pmap(step, donate_argnums=0)
    pchunk = pmap(make_train_chunk(step), donate_argnums=0)
    punrolled = pmap(make_train_chunk(step, unroll=True), donate_argnums=0)
    peval = pmap(ev)
    note = ("note: --parallel pmap with a single device runs like parallel='none' (no data parallelism)"
            if n == 1 else "")
    return Strategy("pmap", n, lambda s, x, y: _unstack_metrics(pstep(s, x, y)),
                    lambda s, x, y: _unstack_metrics(pchunk(s, x, y)),
                    lambda *a: _first(peval(*a)), place_state, _first, place_batch, note,
                    train_unrolled=lambda s, x, y: _unstack_metrics(punrolled(s, x, y)),
                    compiler_options=compiler_options_for(devices[0].platform))


def _unstack_metrics(out):
    state, metrics = out
    return state, _first(metrics)


def _shard_strategy(model, tx, kw) -> Strategy:
    mesh = Mesh(np.array(jax.devices()), ("data",))
    everywhere = replicated(mesh)        # the state's layout: a whole copy on every device
    rows = data_sharding(mesh)
    stacked_rows = data_sharding(mesh, batch_axis=1)
    step = make_train_step(model, tx, **_train_kw(kw))
    ev = make_eval_step(model, **_eval_kw(kw))

    def place_batch(*arrays, stacked=False):
        return tuple(global_array(a, stacked_rows if stacked else rows) for a in arrays)

    place_state = lambda s: jax.tree.map(lambda x: global_array(x, everywhere), s)  # noqa: E731
    platform = mesh.devices.flat[0].platform
    jit = partial(_jit, platform=platform)
    return Strategy("shard", len(jax.devices()),
                    jit(step, donate_argnums=0, out_shardings=everywhere),
                    jit(make_train_chunk(step), donate_argnums=0, out_shardings=everywhere),
                    jit(ev, out_shardings=everywhere), place_state, lambda s: s, place_batch,
                    train_unrolled=jit(make_train_chunk(step, unroll=True), donate_argnums=0,
                                       out_shardings=everywhere),
                    compiler_options=compiler_options_for(platform),
                    # the dataset replicated on every device, the rows split like a batch's
                    data_step=jit(with_gather(step), donate_argnums=0, out_shardings=everywhere),
                    data_chunk=jit(with_gather(make_train_chunk(step)), donate_argnums=0, out_shardings=everywhere),
                    data_unrolled=jit(with_gather(make_train_chunk(step, unroll=True)), donate_argnums=0,
                                      out_shardings=everywhere),
                    place_data=lambda *xs: tuple(global_array(x, everywhere) for x in xs),
                    place_rows=lambda r, stacked=False: global_array(np.asarray(r, np.int32),
                                                                     stacked_rows if stacked else rows))


def warn_note(strategy: Strategy) -> None:
    if strategy.note:
        warnings.warn(strategy.note, stacklevel=3)

