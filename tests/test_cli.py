"""The `cnnjax` command: help text, clear errors with exit status 2 and nothing written, summary, and (slow)
one real training run on MNIST from ../shared/data followed by `cnnjax evaluate`."""
import json
import os

import pytest

from cnnjax.cli import build_parser, main
from cnnjax.train import fit
from test_parallel_worker import TinyCNN, toy_data

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data")


def _run(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as e:          # argparse errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_train_help_explains_every_option(capsys):
    code, out, _ = _run(["train", "--help"], capsys)
    assert code == 0
    for option in ["--model", "--dataset", "--epochs", "--batch-size", "--optimizer", "--lr", "--data-dir",
                   "--prepared-dir", "--checkpoint-dir", "--resume", "--parallel", "--ensemble", "--dtype", "--seed",
                   "--metrics-out", "--schedule", "--weight-decay", "--label-smoothing", "--loop"]:
        assert option in out
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    assert all(a.help for a in train._actions), [a.dest for a in train._actions if not a.help]
    assert {"train", "evaluate", "summary", "data"} <= set(build_parser()._subparsers._group_actions[0].choices)


@pytest.mark.parametrize("argv, message", [
    (["train", "--model", "nope"], "invalid choice: 'nope'"),
    (["train", "--model", "mnist_cnn", "--optimizer", "lbfgs"], "invalid choice: 'lbfgs'"),
    (["train", "--model", "mnist_cnn", "--lr", "0"], "--lr must be > 0, got 0"),
    (["train", "--model", "mnist_cnn", "--lr", "-0.1"], "--lr must be > 0, got -0.1"),
    (["train", "--model", "mnist_cnn", "--epochs", "0"], "--epochs must be >= 1, got 0"),
    (["train", "--model", "mnist_cnn", "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["train", "--model", "mnist_cnn", "--batch-size", "ten"], "--batch-size must be an integer, got 'ten'"),
    (["train", "--model", "mnist_cnn", "--parallel", "gpu"], "invalid choice: 'gpu'"),
    (["train", "--model", "mnist_cnn", "--lookahead", "5"], "--lookahead must be EVERY:ALPHA"),
    (["train", "--model", "mnist_cnn", "--lookahead", "0:0.5"], "EVERY an int >= 1 and ALPHA in (0, 1]"),
    (["train", "--model", "mnist_cnn", "--lookahead", "5:1.5"], "got '5:1.5'"),
    (["evaluate", "--model", "mnist_cnn", "--checkpoint-dir", "x", "--tta", "rotate"], "invalid choice: 'rotate'"),
])
def test_argument_errors_exit_2_and_name_the_valid_choices(argv, message, capsys):
    code, _, err = _run(argv, capsys)
    assert code == 2 and message in err
    if "invalid choice: 'nope'" in message:
        assert "mnist_cnn" in err and "resnet20" in err


def test_unknown_dataset_and_resume_without_dir(capsys):
    code, _, err = _run(["train", "--model", "mnist_cnn", "--dataset", "svhn"], capsys)
    assert code == 2 and "unknown dataset 'svhn'; valid names: mnist, fashion_mnist, cifar10" in err
    for command in ("train", "evaluate"):   # before any data is read (importing CIFAR-10 took a minute first)
        code, _, err = _run([command, "--model", "mnist_cnn", "--dataset", "cifar10", "--data-dir", "/nonexistent",
                             "--checkpoint-dir", "/nonexistent"], capsys)
        assert code == 2 and "model 'mnist_cnn' takes images (28, 28, 1) but dataset 'cifar10' has (32, 32, 3)" in err
    code, _, err = _run(["train", "--model", "mnist_cnn", "--resume"], capsys)
    assert code == 2 and "--resume needs --checkpoint-dir" in err


@pytest.mark.parametrize("argv", [
    ["train", "--model", "fashion_dnn", "--dataset", "mnist"],
    ["plot", "features", "--model", "fashion_dnn", "--dataset", "mnist", "--out", "never.png"],
    ["data", "info", "mnist"],
])
def test_data_dir_is_the_raw_files_and_prepared_dir_the_prepared_data_on_every_command(argv, capsys, monkeypatch):
    import cnnjax.data
    from cnnjax.data import DataNotFoundError

    seen = {}

    def fake_load(name, split, **kwargs):
        seen.update(kwargs)
        raise DataNotFoundError("not here")
    monkeypatch.setattr(cnnjax.data, "load", fake_load)
    code, _, err = _run(argv + ["--data-dir", "RAW", "--prepared-dir", "PREPARED"], capsys)
    assert code == 2 and "not here" in err
    assert seen["data_dir"] == "RAW" and seen["prepared_dir"] == "PREPARED"


def _folder(root, splits, shape=(28, 28)):
    from PIL import Image
    import numpy as np

    for split in splits:
        for c in ("cat", "dog"):
            (root / split / c).mkdir(parents=True)
            Image.fromarray(np.zeros(shape, np.uint8)).save(root / split / c / "0.png")
    return root


def test_an_image_folder_without_the_split_a_command_needs_is_named_before_decoding(tmp_path, capsys, monkeypatch):
    import cnnjax.data.folder as folder

    monkeypatch.setattr(folder, "decode_file", lambda *a, **k: pytest.fail("decoded an image before the check"))
    root = str(_folder(tmp_path / "pets", ["train"]))
    code, _, err = _run(["train", "--model", "mnist_cnn", "--dataset", root], capsys)
    assert code == 2 and f"--dataset {root!r} has no 'test' split (its splits are ['train'])" in err
    code, _, err = _run(["evaluate", "--model", "mnist_cnn", "--dataset", root, "--split", "validation",
                         "--checkpoint-dir", str(tmp_path)], capsys)
    assert code == 2 and "has no 'validation' split" in err and "Traceback" not in err


def test_unwritable_checkpoint_dir_and_metrics_file_write_nothing(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = _run(["train", "--model", "mnist_cnn", "--checkpoint-dir", str(blocker / "ck")], capsys)
    assert code == 2 and "is not writable" in err
    code, _, err = _run(["train", "--model", "mnist_cnn", "--metrics-out", str(tmp_path / "no" / "m.jsonl"),
                         "--checkpoint-dir", str(tmp_path / "ck")], capsys)
    assert code == 2 and "--metrics-out" in err and "cannot be written" in err
    assert sorted(os.listdir(tmp_path)) == ["file"]        # the checks come before anything is created


def test_plot_with_missing_files_exits_2_and_creates_nothing(tmp_path, capsys):
    code, _, err = _run(["plot", "curves", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "c.png")], capsys)
    assert code == 2 and "no metrics file at" in err and "Traceback" not in err
    code, _, err = _run(["plot", "filters", "--model", "mnist_cnn", "--checkpoint-dir", str(tmp_path / "nope"),
                         "--out", str(tmp_path / "f.png")], capsys)
    assert code == 2 and "--checkpoint-dir" in err and "does not exist" in err
    assert os.listdir(tmp_path) == []          # the checkpoint folder was created for reading before


def test_resume_with_a_different_model_is_refused(tmp_path, capsys):
    x, y = toy_data(32)
    fit(TinyCNN(), (x, y), epochs=1, batch_size=16, progress=False, checkpoint_dir=str(tmp_path),
        meta={"model": "mnist_cnn"})
    code, _, err = _run(["train", "--model", "lenet5", "--checkpoint-dir", str(tmp_path), "--resume"], capsys)
    assert code == 2 and "holds a checkpoint of model 'mnist_cnn', not 'lenet5'" in err
    code, _, err = _run(["train", "--model", "lenet5", "--checkpoint-dir", str(tmp_path)], capsys)
    assert code == 2 and "already holds checkpoints; pass --resume" in err
    code, _, err = _run(["evaluate", "--model", "lenet5", "--checkpoint-dir", str(tmp_path)], capsys)
    assert code == 2 and "holds a checkpoint of model 'mnist_cnn', not 'lenet5'" in err


def test_summary_prints_the_lecture_parameter_count(capsys):
    code, out, _ = _run(["summary", "--model", "mnist_cnn"], capsys)
    assert code == 0 and "693,962" in out          # the notes' Keras summary total for MNIST example 1
    assert out.startswith('Model: "mnist_cnn"')      # titled with the registry name, as Keras titles it


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(os.path.join(DATA, "mnist")), reason="needs ../shared/data/mnist")
def test_train_then_evaluate_on_mnist(tmp_path, capsys):
    ck, metrics = str(tmp_path / "ck"), str(tmp_path / "m.jsonl")
    argv = ["train", "--model", "fashion_dnn", "--dataset", "mnist", "--data-dir", DATA, "--epochs", "1",
            "--limit", "4096", "--batch-size", "128", "--checkpoint-dir", ck, "--metrics-out", metrics,
            "--no-progress", "--lookahead", "4:0.8"]
    code, out, err = _run(argv, capsys)
    assert code == 0, err
    from cnnjax.train import Checkpointer
    saved = Checkpointer(ck)
    assert saved.read_meta()["lookahead"] == [4, 0.8]      # --lookahead reached fit
    saved.close()
    last = out.strip().splitlines()[-1]
    assert last.startswith("test accuracy: ") and "10000 mnist test images" in last
    accuracy = float(last.split()[2])
    assert accuracy > 0.8                                 # 32 steps of Adam on a dense net: well above chance
    lines = [json.loads(line) for line in open(metrics)]
    assert len(lines) == 1 and lines[0]["val_accuracy"] == pytest.approx(accuracy, abs=1e-4)
    assert {"loss", "accuracy", "images_per_s"} <= set(lines[0])
    code, out, err = _run(["evaluate", "--model", "fashion_dnn", "--dataset", "mnist", "--data-dir", DATA,
                           "--checkpoint-dir", ck], capsys)
    assert code == 0, err
    assert f"test accuracy: {accuracy:.4f}" in out
    code, _, err = _run(argv[:9] + ["--limit", "100", "--batch-size", "128"], capsys)
    assert code == 2 and "--batch-size 128 is larger than the 100 training images" in err


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(os.path.join(DATA, "mnist")), reason="needs ../shared/data/mnist")
def test_an_ensembles_test_accuracy_is_labelled_as_the_members_mean(capsys):
    argv = ["train", "--model", "fashion_dnn", "--dataset", "mnist", "--data-dir", DATA, "--epochs", "1",
            "--limit", "1024", "--batch-size", "128", "--ensemble-lrs", "1e-3", "3e-3", "--no-progress"]
    code, out, err = _run(argv, capsys)
    assert code == 0, err
    last = out.strip().splitlines()[-1]
    assert last.startswith("test accuracy: mean of 2 members ") and "test loss: mean of 2 members " in last
    words = last.split()
    mean, members = float(words[6]), [float(words[8].strip("(,")), float(words[9].strip(")"))]
    assert mean == pytest.approx(sum(members) / 2, abs=2e-4)        # the members' mean, as the label says


def test_limit_keeps_every_class_of_a_class_sorted_set(monkeypatch, capsys):
    """--limit N takes every (n // N)-th training image: an image folder is read class by class, and its first
    N images were one class."""
    import numpy as np

    import cnnjax.cli.train_commands
    import cnnjax.train
    from cnnjax.data.loading import Split

    sorted_train = Split(np.zeros((1000, 28, 28, 1), np.uint8), np.repeat(np.arange(10), 100).astype(np.int32),
                         tuple("0123456789"))
    monkeypatch.setattr(cnnjax.cli.train_commands, "_load", lambda dataset, split, args: sorted_train)
    seen = {}

    def fake_fit(model, data, **kwargs):
        seen["labels"] = data[1]
        return None, {}
    monkeypatch.setattr(cnnjax.train, "fit", fake_fit)
    for limit in (50, 30, 73):                      # 30 and 73 do not divide 1000: the last classes are kept too
        code, _, err = _run(["train", "--model", "mnist_cnn", "--limit", str(limit), "--batch-size", "10"], capsys)
        assert code == 0, err
        per_class = np.bincount(seen["labels"], minlength=10)
        assert per_class.sum() == limit and per_class.max() - per_class.min() <= 1, (limit, per_class)
