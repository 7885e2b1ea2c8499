"""Checkpoints with orbax-checkpoint: every N steps and at epoch ends, the last k kept, written atomically,
verified when read, one writer at a time.

Layout: ``<directory>/<step>/{state,meta}``; ``state`` is the `TrainState` pytree (params, optimizer state,
BatchNorm statistics, step, rng), ``meta`` a JSON dict (parameter signature, seed, epoch metrics so far, and what
the caller adds, e.g. the model name). Orbax writes each step into a temporary folder and renames it when complete,
so a process killed mid-write leaves no step folder that `latest_step` would pick; saves are synchronous.

Trust:
- **Checksums.** ``meta["checksums"]`` holds, for every array of the state, its dtype, shape and a BLAKE2b digest
  of its bytes (:func:`state_checksums`); every restore recomputes them and raises `CheckpointCorruptError` where
  one differs or the files cannot be read. ``restore(..., fallback=True)`` (what a resumed `fit` uses) then warns
  and takes the newest older step that verifies, and moves the bad step folders aside (``corrupt-<step>-<time>``,
  kept for inspection, not deleted).
- **Nothing non-finite is saved.** `save` refuses a state with a NaN or an infinity in its parameters, optimizer
  state or BatchNorm statistics (`NonFiniteStateError`), so the latest checkpoint is always a finite one.
- **One writer.** A `Checkpointer` opened with ``writer=True`` holds an exclusive ``flock`` on
  ``<directory>/.cnnjax-writer.lock`` until `close` (the kernel releases it when a process dies, so a killed run
  leaves no stale lock); a second writer gets `CheckpointBusyError` naming the holder, before any training.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import tempfile
import time
import warnings

import jax
import numpy as np
import orbax.checkpoint as ocp

from cnnjax._args import check_int

from .state import param_signature

LOCK_NAME = ".cnnjax-writer.lock"


class CheckpointMismatchError(ValueError):
    """The checkpoint was written for another model (different parameter names or shapes)."""


class CheckpointCorruptError(ValueError):
    """A checkpoint's files cannot be read, or its arrays differ from the checksums saved with them."""


class CheckpointBusyError(ValueError):
    """Another process is writing checkpoints to the same folder."""


class NonFiniteStateError(FloatingPointError):
    """A training state to be saved holds NaN or infinite values."""


def _key_name(key) -> str:
    for attr in ("name", "key", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _leaves_with_paths(tree):
    """[(path 'params/conv/kernel', leaf)] of a pytree, with the same names for a TrainState and for the nested
    dicts orbax restores without a target."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [("/".join(_key_name(k) for k in path), leaf) for path, leaf in flat]


def _host(leaf) -> np.ndarray:
    """A leaf's value on the host; a replicated array that spans processes is read from this process's copy."""
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
        return np.asarray(leaf.addressable_data(0))
    if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(leaf))
    return np.asarray(leaf)


def state_checksums(tree, *, digests: bool = True) -> dict:
    """{path: [dtype, shape, BLAKE2b-128 hex digest of the bytes]} of every array leaf of `tree`; with
    ``digests=False`` only [dtype, shape] (the leaves may then be ``jax.ShapeDtypeStruct``)."""
    out = {}
    for path, leaf in _leaves_with_paths(tree):
        if leaf is None:
            continue
        if not digests:
            out[path] = [str(np.dtype(leaf.dtype)) if not jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)
                         else "key", list(leaf.shape)]
            continue
        value = _host(leaf)
        digest = hashlib.blake2b(np.ascontiguousarray(value).tobytes(), digest_size=16).hexdigest()
        out[path] = [str(value.dtype), list(value.shape), digest]
    return out


def non_finite_counts(tree) -> dict:
    """{path: number of NaN/inf values} of the floating leaves of `tree` that hold any."""
    out = {}
    for path, leaf in _leaves_with_paths(tree):
        if leaf is None or not jax.dtypes.issubdtype(getattr(leaf, "dtype", np.float32), np.inexact):
            continue
        bad = int(np.size(leaf) - np.count_nonzero(np.isfinite(_host(leaf))))
        if bad:
            out[path] = bad
    return out


def check_writable(directory: str) -> str:
    """Create `directory` if needed and prove it writable; return its absolute path or raise ValueError."""
    path = os.path.abspath(os.fspath(directory))
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".cnnjax-write-test-"):
            pass
    except OSError as e:
        raise ValueError(f"checkpoint directory {directory!r} is not writable ({e.strerror or e}); "
                         "choose another --checkpoint-dir.") from None
    return path


def compare_signatures(saved: dict, current: dict, *, where: str) -> None:
    """Raise CheckpointMismatchError naming the differing parameters of two `param_signature` dicts."""
    if saved == current:
        return
    missing = sorted(set(current) - set(saved))
    extra = sorted(set(saved) - set(current))
    shapes = [f"{k}: checkpoint {saved[k]} vs model {current[k]}" for k in sorted(set(saved) & set(current))
              if list(saved[k]) != list(current[k])]
    parts = []
    if shapes:
        parts.append("different shapes: " + "; ".join(shapes[:5]) + (" ..." if len(shapes) > 5 else ""))
    if missing:
        parts.append("in the model but not the checkpoint: " + ", ".join(missing[:5]))
    if extra:
        parts.append("in the checkpoint but not the model: " + ", ".join(extra[:5]))
    raise CheckpointMismatchError(f"{where} was written for a different model ({'; '.join(parts)}). "
                                  "Use the same model and options, or another checkpoint directory.")


def writer_of(directory: str) -> str | None:
    """A description of the process that holds `directory`'s writer lock, or None where no process holds it."""
    path = os.path.join(os.path.abspath(os.fspath(directory)), LOCK_NAME)
    if not os.path.exists(path):
        return None
    with open(path, "r") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _describe_holder(path)
        fcntl.flock(f, fcntl.LOCK_UN)
    return None


def _describe_holder(path: str) -> str:
    try:
        with open(path) as f:
            info = json.loads(f.read() or "{}")
    except (OSError, ValueError):
        info = {}
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["since"])) if "since" in info else "?"
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')}, since {since}"


class Checkpointer:
    """Thin wrapper of `ocp.CheckpointManager` for `TrainState` plus a JSON meta dict (see the module docstring).

    ``writer=True``: this process writes here; it takes the folder's writer lock (process 0 of a multi-process
    run does) and raises `CheckpointBusyError` where another process holds it."""

    def __init__(self, directory: str, *, max_to_keep: int = 3, writer: bool = False):
        max_to_keep = check_int(max_to_keep, "max_to_keep", "Checkpointer")
        self.directory = check_writable(directory)
        self._lock = None
        if writer and jax.process_index() == 0:
            self._lock = self._take_lock()
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=False,
                                               create=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def _take_lock(self):
        path = os.path.join(self.directory, LOCK_NAME)
        f = open(path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise CheckpointBusyError(
                f"checkpoint directory {self.directory} is being written by another run ({_describe_holder(path)}); "
                "wait for it to end, or choose another checkpoint directory.") from None
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}))
        f.flush()
        return f

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state, meta: dict) -> None:
        """Save `state` and `meta` as `step`; `NonFiniteStateError` (nothing written) where the state holds a
        NaN or an infinity."""
        bad = non_finite_counts(state)
        if bad:
            last = self.latest_step()
            where = ", ".join(f"{path} ({n:,})" for path, n in list(bad.items())[:4]) + (" ..." if len(bad) > 4
                                                                                        else "")
            kept = (f"the last checkpoint, step {last} in {self.directory}, is finite" if last is not None
                    else "no checkpoint was written")
            raise NonFiniteStateError(
                f"the training state at step {int(step)} holds {sum(bad.values()):,} non-finite values "
                f"({where}); it was not saved, and {kept}. Try a lower learning rate, gradient clipping or "
                "float32 compute.")
        meta = dict(meta, params=param_signature(state.params), checksums=state_checksums(state))
        self._manager.save(int(step), args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                              meta=ocp.args.JsonSave(meta)), force=True)
        self._manager.wait_until_finished()

    def read_meta(self, step: int | None = None) -> dict:
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        try:
            meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        except Exception as e:     # orbax and TensorStore raise many kinds for unreadable files
            raise CheckpointCorruptError(f"checkpoint {self.directory}/{step}: its meta file cannot be read "
                                         f"({type(e).__name__}: {str(e)[:200]}).") from None
        if not isinstance(meta, dict):
            raise CheckpointCorruptError(f"checkpoint {self.directory}/{step}: its meta file is not a JSON object.")
        return meta

    def restore(self, target, step: int | None = None, *, fallback: bool = False):
        """Restore (state, meta) at `step` (default latest) into the structure, shapes and shardings of
        `target` (a state built for the current model), verified against the saved checksums; a different model
        raises CheckpointMismatchError, a checkpoint that does not verify CheckpointCorruptError.

        ``fallback=True`` (with ``step=None``): where the latest step does not verify, warn, move it aside and
        take the newest older one that does."""
        if step is not None or not fallback:
            return self._restore_step(target, self.latest_step() if step is None else step)
        failures = []
        for candidate in sorted(self.all_steps(), reverse=True):
            try:
                out = self._restore_step(target, candidate)
            except CheckpointCorruptError as e:
                failures.append((candidate, str(e)))
                continue
            if failures:
                moved = [self._move_aside(bad) for bad, _ in failures]
                warnings.warn(f"checkpoint: {'; '.join(reason for _, reason in failures)} Resuming from step "
                              f"{candidate}, the newest that verifies; moved aside: {', '.join(moved)}.",
                              stacklevel=2)
            return out
        if failures:
            raise CheckpointCorruptError(f"no checkpoint in {self.directory} verifies: "
                                         + " ".join(reason for _, reason in failures))
        raise FileNotFoundError(f"no checkpoint in {self.directory}")

    def _move_aside(self, step: int) -> str:
        name = f"corrupt-{step}-{time.strftime('%Y%m%d-%H%M%S')}"
        if jax.process_index() == 0:
            os.replace(os.path.join(self.directory, str(step)), os.path.join(self.directory, name))
        self._manager.reload()
        return name

    def _restore_step(self, target, step):
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        meta = self.read_meta(step)
        where = f"checkpoint {self.directory}/{step}"
        compare_signatures(meta.get("params", {}), param_signature(target.params), where=where)
        saved = meta.get("checksums")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
        except Exception as e:      # noqa: BLE001 - unreadable files raise many kinds (TensorStore, orbax)
            if saved is not None and _layout(saved) == _layout(state_checksums(abstract, digests=False)):
                raise CheckpointCorruptError(f"{where}: its files cannot be read ({type(e).__name__}: "
                                             f"{str(e)[:200]}).") from None
            if not isinstance(e, (ValueError, KeyError, TypeError)):
                raise
            raise CheckpointMismatchError(f"{where} does not match the current training state "
                                          f"(optimizer or BatchNorm layout differs): {e}") from None
        if saved is not None:
            _verify(saved, state_checksums(restored["state"]), where)
        return restored["state"], meta

    def restore_variables(self, step: int | None = None, *, expected_params=None):
        """(params, batch_stats, meta) at `step` (default latest) without knowing the optimizer: for evaluation.
        With `expected_params` (e.g. a fresh model's params, or their `param_signature`), a different model
        raises CheckpointMismatchError. Ensemble checkpoints keep their leading member axis."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        meta = self.read_meta(step)
        if expected_params is not None:
            expected = expected_params if isinstance(expected_params, dict) and all(
                isinstance(v, list) for v in expected_params.values()) else param_signature(expected_params)
            saved = meta.get("params", {})
            if meta.get("ensemble", 1) > 1:   # drop the member axis for the comparison
                saved = {k: v[1:] for k, v in saved.items()}
            compare_signatures(saved, expected, where=f"checkpoint {self.directory}/{step}")
        where = f"checkpoint {self.directory}/{step}"
        try:
            tree = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
        except Exception as e:      # noqa: BLE001 - unreadable files raise many kinds (TensorStore, orbax)
            raise CheckpointCorruptError(f"{where}: its files cannot be read ({type(e).__name__}: "
                                         f"{str(e)[:200]}).") from None
        if meta.get("checksums") is not None:      # the whole state: a damaged file is not trusted in part
            _verify(meta["checksums"], state_checksums(tree), where)
        return tree["params"], tree.get("batch_stats") or {}, meta

    def close(self) -> None:
        """Finish and release the folder (and its writer lock); closing twice is harmless."""
        if self._manager is not None:
            self._manager.close()
            self._manager = None
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None


def _layout(checksums: dict) -> dict:
    return {path: entry[:2] for path, entry in checksums.items()}


def _verify(saved: dict, got: dict, where: str) -> None:
    """CheckpointCorruptError naming the arrays whose dtype, shape or bytes differ from their saved checksums."""
    bad = [path for path in saved if path not in got or got[path] != saved[path]]
    if bad:
        raise CheckpointCorruptError(f"{where} does not verify: {len(bad)} of its {len(saved)} arrays differ from "
                                     f"the checksums saved with them ({', '.join(bad[:4])}"
                                     f"{' ...' if len(bad) > 4 else ''}).")
