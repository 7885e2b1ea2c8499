"""Checkpoints that can be trusted: checksums verified on every read (a corrupt or truncated latest checkpoint is
named, and a resume falls back to the newest one that verifies), nothing non-finite saved, one writer per folder
(stale locks of killed processes released by the kernel), resumes that refuse what would silently go wrong, and
metrics lines restored from the checkpoint."""
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import cli
from cnnjax.train import Checkpointer, create_state, fit, make_optimizer
from cnnjax.train.checkpoint import (CheckpointBusyError, CheckpointCorruptError, NonFiniteStateError,
                                     state_checksums, writer_of)
from test_parallel_worker import TinyCNN, toy_data

KW = dict(batch_size=16, progress=False, loop="step", optimizer="adam", learning_rate=1e-2)


def _target():
    return create_state(TinyCNN(), make_optimizer("adam", 1e-2), input_shape=(8, 8, 1), key=jax.random.PRNGKey(9))


def _data_files(step_dir):
    """The files of a step's saved state, largest first (where the arrays' bytes are)."""
    found = [os.path.join(root, f) for root, _, files in os.walk(os.path.join(step_dir, "state")) for f in files]
    return sorted(found, key=os.path.getsize, reverse=True)


def _trained(tmp_path, epochs=2):
    x, y = toy_data(64)
    state, _ = fit(TinyCNN(), (x, y), epochs=epochs, checkpoint_dir=str(tmp_path), checkpoint_every=2, **KW)
    return (x, y), state


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_damaged_checkpoint_is_named_and_resume_falls_back(tmp_path, damage):
    data, _ = _trained(tmp_path)
    ck = Checkpointer(str(tmp_path))
    steps = ck.all_steps()
    latest = os.path.join(tmp_path, str(steps[-1]))
    path = _data_files(latest)[0]
    blob = bytearray(open(path, "rb").read())
    if damage == "flip":
        for i in range(len(blob) // 2, len(blob) // 2 + 64):
            blob[i] ^= 0xFF
    else:
        blob = blob[: len(blob) // 2]
    open(path, "wb").write(bytes(blob))
    with pytest.raises(CheckpointCorruptError, match=f"checkpoint .*/{steps[-1]}"):
        ck.restore(_target())
    with pytest.raises(CheckpointCorruptError, match=f"checkpoint .*/{steps[-1]}"):
        ck.restore_variables()                          # what `cnnjax evaluate` reads: refused, not evaluated
    ck.close()
    with pytest.warns(UserWarning, match=f"Resuming from step {steps[-2]}, the newest that verifies"):
        state, history = fit(TinyCNN(), data, epochs=3, checkpoint_dir=str(tmp_path), checkpoint_every=2,
                             resume=True, **KW)
    assert int(state.step) == 12 and history["epoch"] == [1, 2, 3]
    assert any(name.startswith(f"corrupt-{steps[-1]}-") for name in os.listdir(tmp_path))   # kept, moved aside


def test_checksums_cover_every_array_and_catch_one_changed_value():
    target = _target()
    sums = state_checksums(target)
    assert set(sums) >= {"params/Conv_0/kernel", "params/Dense_0/bias", "step"}
    changed = target.replace(params=jax.tree.map(lambda a: a, target.params))
    changed.params["Dense_0"]["bias"] = changed.params["Dense_0"]["bias"].at[0].add(1e-7)
    assert state_checksums(changed)["params/Dense_0/bias"] != sums["params/Dense_0/bias"]


def test_a_non_finite_state_is_never_saved(tmp_path):
    ck = Checkpointer(str(tmp_path), writer=True)
    good = _target()
    ck.save(1, good, {})
    bad = good.replace(params=jax.tree.map(lambda a: a.at[(0,) * a.ndim].set(jnp.nan), good.params))
    with pytest.raises(NonFiniteStateError, match=r"step 2 holds \d+ non-finite values .*the last checkpoint, "
                                                  r"step 1 in .*, is finite"):
        ck.save(2, bad, {})
    assert ck.all_steps() == [1]
    ck.close()


def test_training_that_diverges_leaves_only_finite_checkpoints(tmp_path):
    """A learning rate that blows the weights up: training stops with a clear error, and every checkpoint left
    holds finite numbers (the loss is computed before the update, so a finite loss can come with inf weights)."""
    x, y = toy_data(64)
    with pytest.raises(FloatingPointError, match="non-finite|loss became"):
        fit(TinyCNN(), (x, y), epochs=4, checkpoint_dir=str(tmp_path), checkpoint_every=1,
            **dict(KW, optimizer="sgd", learning_rate=1e30))
    ck = Checkpointer(str(tmp_path))
    for step in ck.all_steps():
        state, _ = ck.restore(_target().replace(opt_state=make_optimizer("sgd", 1.0).init(_target().params)),
                              step)
        assert all(np.isfinite(np.asarray(a)).all() for a in jax.tree.leaves(state.params))
    ck.close()


def test_one_writer_per_folder_and_a_killed_writer_leaves_no_lock(tmp_path):
    first = Checkpointer(str(tmp_path), writer=True)
    assert writer_of(str(tmp_path)) is not None and f"pid {os.getpid()}" in writer_of(str(tmp_path))
    with pytest.raises(CheckpointBusyError, match=f"being written by another run \\(pid {os.getpid()}"):
        Checkpointer(str(tmp_path), writer=True)
    with pytest.raises(CheckpointBusyError):       # fit refuses before any training
        fit(TinyCNN(), toy_data(32), epochs=1, checkpoint_dir=str(tmp_path), **KW)
    first.close()
    assert writer_of(str(tmp_path)) is None
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        from cnnjax.train.checkpoint import Checkpointer
        c = Checkpointer({str(tmp_path)!r}, writer=True)
        print("locked", flush=True)
        import time; time.sleep(120)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert f"pid {holder.pid}" in writer_of(str(tmp_path))
    finally:
        holder.kill()
        holder.wait()
    Checkpointer(str(tmp_path), writer=True).close()        # the kernel released the dead writer's lock


def test_resume_refuses_an_empty_folder_changed_settings_and_a_run_past_its_epochs(tmp_path):
    x, y = toy_data(64)
    with pytest.raises(ValueError, match="resume=True but .* holds no checkpoint"):
        fit(TinyCNN(), (x, y), epochs=1, checkpoint_dir=str(tmp_path / "empty"), resume=True, **KW)
    fit(TinyCNN(), (x, y), epochs=2, checkpoint_dir=str(tmp_path), **KW)
    with pytest.raises(ValueError, match=r"other settings \(learning_rate=0.01 there, 0.001 here\)"):
        fit(TinyCNN(), (x, y), epochs=3, checkpoint_dir=str(tmp_path), resume=True, **dict(KW, learning_rate=1e-3))
    with pytest.raises(ValueError, match=r"label_smoothing=0.0 there, 0.1 here"):
        fit(TinyCNN(), (x, y), epochs=3, checkpoint_dir=str(tmp_path), resume=True, label_smoothing=0.1, **KW)
    with pytest.raises(ValueError, match=r"optimizer='adam' there, 'sgd' here"):      # before orbax's tree dump
        fit(TinyCNN(), (x, y), epochs=3, checkpoint_dir=str(tmp_path), resume=True, **dict(KW, optimizer="sgd"))
    with pytest.raises(ValueError, match=r"at step 8 .*past the 4 steps of epochs=1; pass epochs >= 2"):
        fit(TinyCNN(), (x, y), epochs=1, checkpoint_dir=str(tmp_path), resume=True, **KW)
    with pytest.warns(UserWarning, match="nothing left to train"):
        fit(TinyCNN(), (x, y), epochs=2, checkpoint_dir=str(tmp_path), resume=True, **KW)


def test_options_made_meaningless_by_another_are_errors(tmp_path):
    x, y = toy_data(32)
    with pytest.raises(ValueError, match="checkpoint_every needs a checkpoint_dir"):
        fit(TinyCNN(), (x, y), epochs=1, checkpoint_every=2, **KW)
    with pytest.raises(ValueError, match="nesterov=True applies to optimizer='sgd' only"):
        fit(TinyCNN(), (x, y), epochs=1, nesterov=True, **KW)


@pytest.mark.parametrize("argv,message", [
    (["--checkpoint-every", "5"], "--checkpoint-every needs --checkpoint-dir"),
    (["--keep", "2"], "--keep needs --checkpoint-dir"),
    (["--nesterov"], "--nesterov applies to --optimizer sgd only; --optimizer adam would ignore it"),
    (["--optimizer", "adamw", "--momentum", "0.5"], "--momentum applies to --optimizer sgd only"),
])
def test_cli_options_made_meaningless_exit_2(argv, message, capsys):
    assert cli.main(["train", "--model", "mnist_cnn", *argv]) == 2
    assert message in capsys.readouterr().err


def test_cli_resume_on_an_empty_a_missing_and_a_busy_folder_exit_2(tmp_path, capsys):
    assert cli.main(["train", "--model", "mnist_cnn", "--checkpoint-dir", str(tmp_path), "--resume"]) == 2
    assert "holds no checkpoint" in capsys.readouterr().err
    typo = tmp_path / "chekpoints"
    assert cli.main(["train", "--model", "mnist_cnn", "--checkpoint-dir", str(typo), "--resume"]) == 2
    assert "does not exist" in capsys.readouterr().err and not typo.exists()       # not created
    busy = Checkpointer(str(tmp_path), writer=True)
    try:
        assert cli.main(["train", "--model", "mnist_cnn", "--checkpoint-dir", str(tmp_path)]) == 2
        assert "is being written by another run (pid" in capsys.readouterr().err
    finally:
        busy.close()


def test_metric_lines_lost_in_a_kill_are_restored_and_refallen_epochs_replaced(tmp_path):
    """A run killed after epoch 2's checkpoint but before its metrics line: the resumed run writes it back first.
    A resume that fell back to an older checkpoint trains an epoch again: its new line replaces the old one."""
    history = {"epoch": [1, 2], "loss": [0.5, 0.25], "val_accuracy": [0.8, 0.9], "loss_members": [[0.5], [0.25]]}
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"epoch": 1, "loss": 0.5, "val_accuracy": 0.8}) + "\nnot json\n")
    metrics = cli.MetricsFile(str(path), resume=True, history=history)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2]
    assert lines[1] == {"epoch": 2, "loss": 0.25, "val_accuracy": 0.9, "loss_members": [0.25]}
    metrics.write({"epoch": 2, "loss": 0.3})
    metrics.write({"epoch": 3, "loss": 0.2})
    assert [json.loads(line) for line in path.read_text().splitlines()] == [
        {"epoch": 1, "loss": 0.5, "val_accuracy": 0.8}, {"epoch": 2, "loss": 0.3}, {"epoch": 3, "loss": 0.2}]
    cli.MetricsFile(str(path), resume=False)                   # a fresh run starts the file again
    assert path.read_text() == ""


def test_fit_warns_when_the_model_ends_in_softmax():
    from cnnjax import models
    from cnnjax.layers import Activation, Dense, Flatten, Sequential
    from cnnjax.train.trainer import ends_in_softmax
    assert ends_in_softmax(models.get("mnist_cnn", softmax=True)) and not ends_in_softmax(models.get("mnist_cnn"))
    assert ends_in_softmax(Sequential([Flatten(), Dense(10, activation="softmax")]))
    assert ends_in_softmax(Sequential([Flatten(), Dense(10), Activation("softmax")]))
    assert ends_in_softmax(Sequential([Flatten(), Dense(10), jax.nn.softmax]))
    assert not ends_in_softmax(Sequential([Flatten(), Dense(10, activation="softmax"), Dense(10)]))
    x, y = toy_data(16)
    with pytest.warns(UserWarning, match="ends in a softmax, but fit's loss takes logits"):
        fit(Sequential([Flatten(), Dense(10, activation="softmax")]), (x, y), epochs=1, **KW)
