"""Orbax checkpoints: round trip, keep-last-k, clear errors for another model or settings, unwritable folders,
and the kill-and-resume test (SIGKILL a training subprocess at a random step; the resumed run must end with
bit-identical parameters and optimizer state)."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from cnnjax.train import CheckpointMismatchError, Checkpointer, create_state, fit, make_optimizer
from test_parallel_worker import TinyCNN, job_train, toy_data

WORKER = os.path.join(os.path.dirname(__file__), "test_parallel_worker.py")


def _equal_trees(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


def test_round_trip_keep_last_k_and_resume_at_end(tmp_path):
    x, y = toy_data(64)
    kw = dict(epochs=2, batch_size=16, progress=False, checkpoint_dir=str(tmp_path), checkpoint_every=3, keep=2)
    state, hist = fit(TinyCNN(batch_norm=True, dropout=0.2), (x, y), **kw)
    ck = Checkpointer(str(tmp_path))
    assert ck.all_steps() == [6, 8]                       # saves at 3, 4 (epoch end), 6, 8 (epoch end); keep 2
    target = create_state(TinyCNN(batch_norm=True, dropout=0.2), make_optimizer("adam", 1e-3),
                          input_shape=(8, 8, 1), key=jax.random.PRNGKey(9))
    restored, meta = ck.restore(target)
    assert _equal_trees(restored, state) and int(restored.step) == 8
    assert meta["history"]["loss"] == pytest.approx(hist["loss"])
    assert not [p for p in os.listdir(tmp_path) if "tmp" in p]            # no leftovers of the atomic writes
    # resuming a finished run trains no further, says so, and returns the same state and history
    with pytest.warns(UserWarning, match="nothing left to train: .* is at step 8, the end of epochs=2"):
        again, hist2 = fit(TinyCNN(batch_norm=True, dropout=0.2), (x, y), resume=True, **kw)
    assert _equal_trees(again, state) and hist2["loss"] == pytest.approx(hist["loss"])


def test_restoring_another_model_names_the_mismatch(tmp_path):
    x, y = toy_data(32)
    fit(TinyCNN(), (x, y), epochs=1, batch_size=16, progress=False, checkpoint_dir=str(tmp_path))
    other = create_state(TinyCNN(features=8), make_optimizer("adam", 1e-3), input_shape=(8, 8, 1),
                         key=jax.random.PRNGKey(0))
    with pytest.raises(CheckpointMismatchError, match=r"different model \(different shapes: Conv_0/bias: "
                                                      r"checkpoint \[4, 'float32'\] vs model \[8, 'float32'\]"):
        Checkpointer(str(tmp_path)).restore(other)
    with pytest.raises(CheckpointMismatchError, match="in the model but not the checkpoint: BatchNorm_0/bias"):
        fit(TinyCNN(batch_norm=True), (x, y), epochs=2, batch_size=16, progress=False,
            checkpoint_dir=str(tmp_path), resume=True)
    with pytest.raises(ValueError, match=r"it was written with other settings \(seed=0 there, 1 here\)"):
        fit(TinyCNN(), (x, y), epochs=2, batch_size=16, progress=False, checkpoint_dir=str(tmp_path),
            resume=True, seed=1)
    with pytest.raises(ValueError, match=r"it was written with other settings \(model='a' there, 'b' here\)"):
        fit(TinyCNN(), (x, y), epochs=1, batch_size=16, progress=False, checkpoint_dir=str(tmp_path / "m"),
            meta={"model": "a"})
        fit(TinyCNN(), (x, y), epochs=1, batch_size=16, progress=False, checkpoint_dir=str(tmp_path / "m"),
            meta={"model": "b"}, resume=True)


def test_unwritable_checkpoint_dir_fails_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    x, y = toy_data(32)
    with pytest.raises(ValueError, match=r"checkpoint directory '.*file/ck' is not writable"):
        fit(TinyCNN(), (x, y), epochs=1, batch_size=16, progress=False, checkpoint_dir=str(blocker / "ck"))


def _steps_in(folder):
    try:
        return [int(p) for p in os.listdir(folder) if p.isdigit()]
    except FileNotFoundError:
        return []


@pytest.mark.slow
@pytest.mark.long   # outside README's test command (CI's 8 minutes); `pytest -m long` runs it
def test_sigkill_at_random_step_then_resume_is_bit_identical(tmp_path):
    total = 3 * (256 // 16)                    # job_train: 256 examples, batch 16, 3 epochs, save every step
    kill_at = random.Random(os.getpid()).randint(3, total - 8)
    ckpt, out = str(tmp_path / "ck"), str(tmp_path / "resumed.json")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, WORKER, "train", out, ckpt, "0"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while max(_steps_in(ckpt), default=0) < kill_at and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, f"training ended before the kill: {proc.stderr.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = max(_steps_in(ckpt))
    assert killed_at < total
    ck = Checkpointer(ckpt)
    chosen = ck.read_meta()["loop"]                 # what loop="auto" picked before the kill
    ck.close()
    res = subprocess.run([sys.executable, WORKER, "train", out, ckpt, "1"], env=env, capture_output=True,
                         timeout=240)
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    resumed = json.load(open(out))
    assert resumed["loop"] == chosen                # the resumed run keeps the form, without measuring again
    # The uninterrupted run uses that form too (loop="auto"'s rule picks it again; passing it keeps this test about
    # resumption): the forms agree to float rounding, not bit for bit (each is another XLA program).
    job_train(str(tmp_path / "straight.json"), str(tmp_path / "ck2"), "0", chosen)
    straight = json.load(open(tmp_path / "straight.json"))
    assert resumed["step"] == straight["step"] == total
    assert resumed["params"] == straight["params"]          # bit for bit (exact float equality)
    assert resumed["opt"] == straight["opt"]
    assert resumed["history"]["loss"] == pytest.approx(straight["history"]["loss"], rel=1e-6)


def test_a_folder_with_checkpoints_without_resume_fails_before_training(tmp_path):
    """orbax refused the first save (StepAlreadyExistsError) after a whole epoch of training: work lost."""
    x, y = toy_data(32)
    kw = dict(epochs=1, batch_size=16, progress=False, loop="step", checkpoint_dir=str(tmp_path))
    fit(TinyCNN(), (x, y), **kw)
    before = sorted(os.listdir(tmp_path))
    seen = []
    with pytest.raises(ValueError, match=r"fit: checkpoint_dir '.*' already holds checkpoints \(last step 2\); pass "
                                         r"resume=True to continue, or choose an empty folder"):
        fit(TinyCNN(), (x, y), on_epoch_end=seen.append, **kw)
    assert not seen and sorted(os.listdir(tmp_path)) == before
    with pytest.warns(UserWarning, match="nothing left to train"):
        _, hist = fit(TinyCNN(), (x, y), resume=True, **kw)          # the folder is still usable
    assert hist["epoch"] == [1]
