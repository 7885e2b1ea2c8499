"""Checkpoints with orbax-checkpoint: every N steps and at epoch ends, the last k kept, written atomically.

Layout: ``<directory>/<step>/{state,meta}``; ``state`` is the `TrainState` pytree (params, optimizer state,
BatchNorm statistics, step, rng), ``meta`` a JSON dict (parameter signature, seed, epoch metrics so far, and what
the caller adds, e.g. the model name). Orbax writes each step into a temporary folder and renames it when complete,
so a process killed mid-write leaves no step folder that `latest_step` would pick; saves are synchronous.
"""
from __future__ import annotations

import os
import tempfile

import jax
import orbax.checkpoint as ocp

from .state import param_signature


class CheckpointMismatchError(ValueError):
    """The checkpoint was written for another model (different parameter names or shapes)."""


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


class Checkpointer:
    """Thin wrapper of `ocp.CheckpointManager` for `TrainState` plus a JSON meta dict."""

    def __init__(self, directory: str, *, max_to_keep: int = 3):
        if not isinstance(max_to_keep, int) or max_to_keep < 1:
            raise ValueError(f"Checkpointer: max_to_keep must be an int >= 1, got {max_to_keep!r}.")
        self.directory = check_writable(directory)
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=False,
                                               create=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state, meta: dict) -> None:
        meta = dict(meta, params=param_signature(state.params))
        self._manager.save(int(step), args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                              meta=ocp.args.JsonSave(meta)), force=True)
        self._manager.wait_until_finished()

    def read_meta(self, step: int | None = None) -> dict:
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        return self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

    def restore(self, target, step: int | None = None):
        """Restore (state, meta) at `step` (default latest) into the structure, shapes and shardings of
        `target` (a state built for the current model); a different model raises CheckpointMismatchError."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        meta = self.read_meta(step)
        where = f"checkpoint {self.directory}/{step}"
        compare_signatures(meta.get("params", {}), param_signature(target.params), where=where)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointMismatchError(f"{where} does not match the current training state "
                                          f"(optimizer or BatchNorm layout differs): {e}") from None
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
        tree = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
        return tree["params"], tree.get("batch_stats") or {}, meta

    def close(self) -> None:
        self._manager.close()
