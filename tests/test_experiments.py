"""The lecture experiment scripts run end to end in --quick mode (tiny subsets, 1 epoch), in this process."""
import importlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
SHARED = Path(os.environ.get("CNNJAX_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
needs_mnist = pytest.mark.skipif(not (SHARED / "mnist").is_dir(), reason=f"no MNIST files at {SHARED}")
SCRIPTS = ["conv_basics", "lecture_models", "dnn_vs_cnn", "image_folder"]


def script(name):
    if str(EXPERIMENTS) not in sys.path:
        sys.path.insert(0, str(EXPERIMENTS))
    return importlib.import_module(name)


def rows(out):
    return json.loads((out / "results.json").read_text())


@pytest.mark.parametrize("name", SCRIPTS)
def test_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        script(name).main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--quick" in text and "--out" in text and "--data-dir" in text


@needs_mnist
def test_conv_basics_all_examples_agree(tmp_path):
    assert script("conv_basics").main(["--quick", "--out", str(tmp_path), "--data-dir", str(SHARED)]) == 0
    table = rows(tmp_path)
    assert len(table) >= 30 and all(r["agrees"] == "yes" for r in table)
    for png in ("digit_conv_pool.png", "edge_masks.png", "line_filters.png"):
        assert (tmp_path / png).stat().st_size > 1000


def test_conv_basics_detects_a_disagreement():
    agrees = script("conv_basics").agrees
    assert agrees(np.array([[12, 16], [24, 28]]), [[12, 16], [24, 28]])
    assert not agrees(np.array([[12, 16], [24, 29]]), [[12, 16], [24, 28]])
    assert not agrees((1, 3, 3, 1), (1, 2, 2, 1))


@needs_mnist
@pytest.mark.long   # outside README's test command (CI's 8 minutes); `pytest -m long` runs it
def test_lecture_models_quick(tmp_path):
    assert script("lecture_models").main(["--quick", "--runs", "mnist_cnn_strides2", "--out", str(tmp_path),
                                          "--data-dir", str(SHARED)]) == 0
    (row,) = rows(tmp_path)
    # stride 2: 28 -> (28-3)//2+1 = 13 -> pool 6x6x32 = 1152 -> 1152*128+128; plus conv 320 and Dense(10) 1290
    assert row["params"] == 320 + 1152 * 128 + 128 + 1290
    assert row["epochs"] == 1 and row["train_images"] == 512 and 0 <= row["test_accuracy"] <= 1
    assert (tmp_path / "mnist_cnn_strides2_curves.png").is_file()
    assert "| mnist_cnn_strides2 |" in (tmp_path / "results.md").read_text()


@needs_mnist
@pytest.mark.long   # outside README's test command (CI's 8 minutes); `pytest -m long` runs it
def test_dnn_vs_cnn_quick(tmp_path):
    assert script("dnn_vs_cnn").main(["--quick", "--out", str(tmp_path), "--data-dir", str(SHARED)]) == 0
    dnn, cnn = rows(tmp_path)
    assert dnn["params"] == 784 * 128 + 128 + 128 * 10 + 10
    assert cnn["params"] == 320 + 18_496 + 36_928 + 576 * 64 + 64 + 650   # 28->26->13->11->5->3: 3*3*64 = 576
    assert dnn["dataset"] == cnn["dataset"] and dnn["epochs"] == cnn["epochs"] == 1
    assert (tmp_path / "dnn_vs_cnn_curves.png").is_file()


def test_image_folder_quick_on_a_class_folder_tree(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "pets"
    for split, n in (("train", 40), ("test", 8)):
        for cls, level in (("dark", 40), ("light", 210)):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(level + rng.normal(0, 20, (20, 24, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / cls / f"{i:03d}.png")
    out = tmp_path / "out"
    assert script("image_folder").main(["--quick", "--folder", str(root), "--out", str(out)]) == 0
    (row,) = rows(out)
    assert row["classes"] == "dark / light" and row["image_size"] == "32x32"
    assert row["train_images"] == 80 and row["test_images"] == 16
    for png in ("image_folder_predictions.png", "image_folder_curves.png", "image_folder_confusion.png"):
        assert (out / png).stat().st_size > 1000


def test_extract_classes_from_a_cifar_like_archive(tmp_path):
    import io
    import tarfile

    archive = tmp_path / "mini.tar"
    with tarfile.open(archive, "w") as tar:
        for split in ("train", "test"):
            for cls in ("cat", "dog", "ship"):
                for i in range(3):
                    data = b"jpeg bytes %d" % i
                    info = tarfile.TarInfo(f"{split}/{cls}/{i:04d}.jpg")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    counts = script("image_folder").extract_classes(str(archive), str(tmp_path / "root"), ["cat", "dog"],
                                                    per_split={"train": 2, "test": 1})
    assert counts == {("train", "cat"): 2, ("train", "dog"): 2, ("test", "cat"): 1, ("test", "dog"): 1}
    assert sorted(os.listdir(tmp_path / "root" / "train" / "dog")) == ["0000.jpg", "0001.jpg"]
    assert not (tmp_path / "root" / "train" / "ship").exists()
