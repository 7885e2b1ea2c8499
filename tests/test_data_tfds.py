"""The tensorflow-datasets path (needs TensorFlow, skipped without it): tfds copies written by
`cnnjax data import --tfds` are in the files' order, tfds' shuffled copies (as tfds' own download writes them) are
put back in that order, and both give exactly the arrays of cnnjax's own readers; names and versions are tfds';
image folders read as tfds.ImageFolder reads them; the first run prints only cnnjax's lines."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
tfds = pytest.importorskip("tensorflow_datasets")

from cnnjax.data import load  # noqa: E402
from cnnjax.data.builders import LOCAL_BUILDERS, LocalCifar10, LocalMnist, import_dataset  # noqa: E402
from cnnjax.data.prepare import read_distribution  # noqa: E402
from cnnjax.data.sources import CLASS_NAMES, VERSIONS  # noqa: E402
from cnnjax.data.tfds_prepared import read_prepared  # noqa: E402
from test_data_load import write_cifar_binary, write_idx_set  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _sources(tmp_path, name):
    """Small distribution files of `name` in tmp_path/src: MNIST 30 + 10 records, CIFAR-10 6 x 2 records."""
    src = tmp_path / "src"
    if name == "mnist":
        write_idx_set(src / "mnist", n_train=30, n_test=10)
    else:
        rng = np.random.default_rng(1)
        src.mkdir()
        write_cifar_binary(src / "cifar-10-binary.tar.gz", rng.integers(0, 256, (6, 2, 32, 32, 3), dtype=np.uint8),
                           rng.integers(0, 10, (6, 2)))
    return src


def _shuffled(base):
    """`base` writing tfds' default hashed order, as tfds' own download does."""
    class Shuffled(base, skip_registration=True):
        name = base.name

        def _info(self):
            info = super()._info()
            info.as_proto.disable_shuffling = False
            return info

    return Shuffled


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_tfds_copies_give_the_own_readers_arrays(tmp_path, name):
    src = _sources(tmp_path, name)
    own = read_distribution(name, src, progress=False)
    # 1. cnnjax's tfds copy is in file order for plain tfds too, and load reads it into the same arrays
    path = import_dataset(name, src, data_dir=tmp_path / "copy")
    plain = tfds.as_numpy(tfds.load(name, split="test", data_dir=str(tmp_path / "copy"), download=False,
                                    batch_size=-1))
    np.testing.assert_array_equal(plain["image"], own["test"][0])
    for split in ("train", "test"):
        s = load(name, split, prepared_dir=tmp_path / "copy", download=False, as_uint8=True, progress=False)
        np.testing.assert_array_equal(s.images, own[split][0])
        np.testing.assert_array_equal(s.labels, own[split][1])
        assert s.class_names == CLASS_NAMES[name]
    assert path == str(tmp_path / "copy" / name / VERSIONS[name])
    # 2. a copy in tfds' hashed order (a tfds download) is put back in file order
    base = {"mnist": LocalMnist, "cifar10": LocalCifar10}[name]
    _shuffled(base)(data_dir=str(tmp_path / "shuffled")).download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(src)))
    folder = tmp_path / "shuffled" / name / VERSIONS[name]
    for split in ("train", "test"):
        stored = tfds.as_numpy(tfds.builder_from_directory(str(folder)).as_dataset(split=split, batch_size=-1))
        assert not np.array_equal(stored["label"], own[split][1]) or len(set(own[split][1])) == 1  # really shuffled
        images, labels, names = read_prepared(name, split, folder, progress=False)
        np.testing.assert_array_equal(images, own[split][0])
        np.testing.assert_array_equal(labels, own[split][1])


def test_versions_and_class_names_are_tfds_own(tmp_path):
    from tensorflow_datasets.image_classification import cifar, mnist

    for name, tfds_class in (("mnist", mnist.MNIST), ("fashion_mnist", mnist.FashionMNIST),
                             ("cifar10", cifar.Cifar10)):
        assert VERSIONS[name] == str(tfds_class.VERSION) == str(LOCAL_BUILDERS[name].VERSION)
        if name != "cifar10":  # (tfds fills cifar10's names from the files while preparing)
            assert tuple(tfds_class(data_dir=str(tmp_path)).info.features["label"].names) == CLASS_NAMES[name]


def test_image_folder_reads_as_tfds_image_folder(tmp_path):
    """Same classes, label numbers and images per split as tfds.ImageFolder (whose order is its own)."""
    from PIL import Image

    from cnnjax.data.folder import load_image_folder

    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("dogs", "cats"):
            (tmp_path / split / cls).mkdir(parents=True)
            for j in range(n):
                Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).save(
                    tmp_path / split / cls / f"{j}.png")
    builder = tfds.ImageFolder(str(tmp_path))
    for split in ("train", "test"):
        images, labels, names = load_image_folder(tmp_path, split, progress=False)
        assert tuple(builder.info.features["label"].names) == names == ("cats", "dogs")
        theirs = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
        assert sorted((im.tobytes(), int(lab)) for im, lab in zip(theirs["image"], theirs["label"])) == \
            sorted((im.tobytes(), int(lab)) for im, lab in zip(images, labels))


@pytest.mark.long   # outside README's test command (CI's 8 minutes); `pytest -m long` runs it
def test_first_tfds_import_prints_only_cnnjax_lines(tmp_path):
    """`python -m cnnjax.data import mnist --tfds` in a fresh process (TensorFlow imported there for the first
    time): stderr holds the two preparation lines and nothing of TensorFlow's or tfds'."""
    src = write_idx_set(tmp_path / "src" / "mnist", n_train=20, n_test=10).parent
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "CNNJAX_VERBOSE")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    result = subprocess.run([sys.executable, "-m", "cnnjax.data", "import", "mnist", "--data-dir", str(src),
                             "--prepared-dir", str(tmp_path / "p"), "--tfds"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("preparing MNIST from") and \
        lines[1].startswith("preparing the tensorflow-datasets copy of MNIST"), result.stderr[-2000:]
    assert result.stdout.count("\n") == 2 and "tensorflow-datasets copy in" in result.stdout, result.stdout
