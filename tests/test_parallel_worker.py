"""Subprocess worker for the multi-device, multi-process and kill-and-resume tests (not a test by itself).

Run as ``python tests/test_parallel_worker.py JOB OUT_JSON [args]``; XLA_FLAGS / distributed settings must be
in the environment before this file imports jax. Also imported by the in-process tests for the tiny models.
"""
from __future__ import annotations

import json
import os
import sys

import flax.linen as nn
import numpy as np


class TinyCNN(nn.Module):
    """conv 3x3 (4) -> relu -> [dropout] -> [batchnorm] -> dense(3): small enough to compile in a second."""
    dtype: object = None
    dropout: float = 0.0
    batch_norm: bool = False
    features: int = 4

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Conv(self.features, (3, 3), dtype=self.dtype)(x))
        if self.batch_norm:
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype)(x)
        if self.dropout:
            x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(3, dtype=self.dtype)(x.reshape(x.shape[0], -1))


def toy_data(n=128, seed=0, size=8):
    """n images [n, size, size, 1] in [0,1]: faint noise plus a bright vertical line (label 0), a horizontal
    line (label 1) or no line (label 2), at a random position."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n).astype(np.int32)
    x = (rng.random((n, size, size, 1)) * 0.3).astype(np.float32)
    where = rng.integers(0, size, n)
    for i in range(n):
        if labels[i] == 0:
            x[i, :, where[i], 0] = 1.0
        elif labels[i] == 1:
            x[i, where[i], :, 0] = 1.0
    return x, labels


def _flat(params):
    import jax
    return {"/".join(str(k.key) for k in p): np.asarray(v).tolist()
            for p, v in jax.tree_util.tree_flatten_with_path(params)[0]}


def job_modes(out):
    """Same seed, same global batch: none / pmap / shard on 8 forced CPU devices (+ BatchNorm under shard)."""
    import jax
    from cnnjax.train import fit
    x, y = toy_data(128)
    res = {"devices": jax.device_count()}
    runs = [("plain", "none", "step"), ("plain", "none", "scan"), ("plain", "pmap", "step"),
            ("plain", "pmap", "scan"), ("plain", "shard", "step"), ("bn", "none", "step"), ("bn", "shard", "scan")]
    for name, mode, loop in runs:
        state, hist = fit(TinyCNN(batch_norm=name == "bn"), (x, y), optimizer="sgd", learning_rate=0.1,
                          epochs=2, batch_size=32, parallel=mode, loop=loop, progress=False, seed=3)
        res[f"{name}/{mode}/{loop}"] = {"loss": hist["loss"], "params": _flat(state.params),
                                        "batch_stats": _flat(state.batch_stats)}
    json.dump(res, open(out, "w"))


def job_distributed(out, port, pid, nproc):
    import jax
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=int(nproc),
                               process_id=int(pid))
    from cnnjax.train import fit
    x, y = toy_data(128)
    state, hist = fit(TinyCNN(), (x, y), optimizer="adam", learning_rate=1e-2, epochs=2, batch_size=32,
                      parallel="shard", progress=False, seed=5, validation_data=(x[:50], y[:50]))
    params = jax.tree.map(lambda a: np.asarray(a), state.params)
    if jax.process_index() == 0:
        json.dump({"devices": jax.device_count(), "processes": jax.process_count(), "loss": hist["loss"],
                   "val_accuracy": hist["val_accuracy"], "params": _flat(params)}, open(out, "w"))


def job_auto(out, port, pid, nproc):
    """fit(loop="measure") over 2 processes, where process 0 alone is made to want the long scan probe (its short
    scan "loses narrowly"): every probe call is a collective, so the processes must follow process 0."""
    import jax
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=int(nproc),
                               process_id=int(pid))
    from cnnjax.train import fit
    from cnnjax.train.cpu_speed import loop_choice
    if int(pid) == 0:
        real_choose = loop_choice.choose
        loop_choice.SCAN_CONTENDS = 1e9
        loop_choice.choose = lambda m: "step" if m.get("scan_steps") == loop_choice.SCAN_PROBE_STEPS else (
            real_choose(m))
    x, y = toy_data(256)                      # 8 steps an epoch at batch 32: the probe runs (more than 4 steps)
    fit(TinyCNN(), (x, y), optimizer="adam", learning_rate=1e-2, epochs=1, batch_size=32, parallel="shard",
        progress=True, seed=5, loop="measure")


def job_train(out, ckpt_dir, resume, loop="auto"):
    """Training with a checkpoint after every step (for the SIGKILL / resume test); writes the final state, the
    history and the loop form the run used (from its checkpoints' meta)."""
    from cnnjax.train import Checkpointer, fit
    x, y = toy_data(256)
    state, hist = fit(TinyCNN(dropout=0.2), (x, y), optimizer="adam", learning_rate=1e-2, epochs=3,
                      batch_size=16, checkpoint_dir=ckpt_dir, checkpoint_every=1, keep=2,
                      resume=resume == "1", progress=False, seed=7, loop=loop)
    ckpt = Checkpointer(ckpt_dir)
    used = ckpt.read_meta()["loop"]
    ckpt.close()
    json.dump({"params": _flat(state.params), "opt": [np.asarray(l).tolist() for l in
                                                     __import__("jax").tree.leaves(state.opt_state)],
               "step": int(state.step), "history": hist, "loop": used}, open(out, "w"))


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    job, out, *rest = sys.argv[1:]
    {"modes": job_modes, "distributed": job_distributed, "auto": job_auto, "train": job_train}[job](out, *rest)
