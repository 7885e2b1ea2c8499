"""`load` end to end without TensorFlow: crafted distribution files -> cnnjax's own readers -> arrays in the files'
order and the array cache; a download from file: URLs; earlier caches in tfds' hashed order put back in file
order; every error case; one printed line per preparation step. The tfds path (its copies equal to the own
readers' arrays) is in test_data_tfds.py. Real-data full imports are marked long."""
import gzip
import importlib
import io
import os
import struct
import tarfile
import warnings
from pathlib import Path

import hashlib
import json

import numpy as np
import pytest

from cnnjax.data import DataNotFoundError, load
from cnnjax.data.cifar import CIFAR10_CLASSES

load_module = importlib.import_module("cnnjax.data.loading")
download_module = importlib.import_module("cnnjax.data.download")
SHARED = Path(os.environ.get("CNNJAX_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]  # ../shared/data/README.md
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def idx_bytes(array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_set(folder, n_train=30, n_test=10):
    """Image i of a split is filled with value i (+100 for test) and has label i % 10."""
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n, base in (("train", n_train, 0), ("t10k", n_test, 100)):
        images = (np.arange(n, dtype=np.uint8)[:, None, None] + base) * np.ones((1, 28, 28), np.uint8)
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.arange(n) % 10)))
    return folder


@pytest.fixture(scope="module")
def tiny_mnist(tmp_path_factory):
    source = tmp_path_factory.mktemp("src")
    write_idx_set(source / "mnist")
    return source, tmp_path_factory.mktemp("prepared")


def test_tiny_mnist_in_file_order_then_from_the_cache(tiny_mnist, capsys):
    source, prepared = tiny_mnist
    s = load("mnist", "train", data_dir=source, prepared_dir=prepared)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"preparing MNIST from {source / 'mnist'} once"), err
    assert "\r" not in err and "\x1b" not in err  # no progress bar outside a terminal
    assert s.images.shape == (30, 28, 28, 1) and s.images.dtype == np.float32 and s.labels.dtype == np.int32
    np.testing.assert_array_equal(np.round(s.images[:, 0, 0, 0] * 255), np.arange(30))  # record i is row i
    np.testing.assert_array_equal(s.labels, np.arange(30) % 10)
    assert s.class_names == tuple(str(k) for k in range(10))
    t = load("mnist", "test", data_dir=source, prepared_dir=prepared, as_uint8=True)   # prepared with train
    assert t.images.dtype == np.uint8 and t.images[:, 5, 5, 0].tolist() == list(range(100, 110))
    assert (Path(prepared) / "_cnnjax_arrays" / "mnist" / "3.0.1" / "train.npz").is_file()
    again = load("mnist", "train", prepared_dir=prepared, download=False, data_format="channels_first")
    assert capsys.readouterr().err == ""  # nothing printed once prepared
    assert again.images.shape == (30, 1, 28, 28)
    np.testing.assert_array_equal(again.images[:, 0], s.images[..., 0])
    np.testing.assert_array_equal(again.labels, s.labels)
    big = load("mnist", "train", prepared_dir=prepared, image_size=(32, 32), progress=False)
    assert big.images.shape == (30, 32, 32, 1)
    np.testing.assert_allclose(big.images[:, 16, 16, 0], s.images[:, 0, 0, 0], atol=1e-6)  # solid stays solid
    # a data_dir that does not exist is a mistake even where the cache would serve (it was silently ignored)
    with pytest.raises(DataNotFoundError, match=r"data_dir '.*typo' is not a folder"):
        load("mnist", "train", data_dir=str(Path(source) / "typo"), prepared_dir=prepared, progress=False)


def test_fashion_mnist_from_files_in_data_dir_itself(tmp_path):
    source = write_idx_set(tmp_path / "files", n_train=12, n_test=4)
    s = load("fashion_mnist", "test", data_dir=source, prepared_dir=tmp_path / "p", progress=False)
    assert s.images.shape == (4, 28, 28, 1) and s.class_names[0] == "T-shirt/top" and s.class_names[9] == "Ankle boot"
    np.testing.assert_array_equal(np.round(s.images[:, 0, 0, 0] * 255), np.arange(100, 104))


def write_cifar_binary(path, x, y):
    """x (6, k, 32, 32, 3), y (6, k): batches data_batch_1..5 and test_batch as a binary tarball."""
    with tarfile.open(path, "w:gz") as tar:
        for b, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
            data = b"".join(bytes([int(y[b, i])]) + x[b, i].transpose(2, 0, 1).tobytes() for i in range(x.shape[1]))
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}.bin")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_cifar10_from_binary_tarball_in_batch_order(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (6, 2, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, (6, 2))
    write_cifar_binary(tmp_path / "cifar-10-binary.tar.gz", x, y)
    s = load("cifar10", "train", data_dir=tmp_path, prepared_dir=tmp_path / "p", as_uint8=True, progress=False)
    assert s.class_names == CIFAR10_CLASSES
    np.testing.assert_array_equal(s.images, x[:5].reshape(10, 32, 32, 3))   # batch 1 record 0, record 1, batch 2 ...
    np.testing.assert_array_equal(s.labels, y[:5].reshape(10))
    t = load("cifar10", "test", data_dir=tmp_path, prepared_dir=tmp_path / "p", as_uint8=True, progress=False)
    np.testing.assert_array_equal(t.images, x[5])


def test_download_from_file_urls_checked_by_sha256(tmp_path, monkeypatch, capsys):
    server = write_idx_set(tmp_path / "server", n_train=12, n_test=4)
    files = tuple((f.name, hashlib.sha256(f.read_bytes()).hexdigest()) for f in sorted(server.iterdir()))
    monkeypatch.setitem(download_module.DOWNLOADS, "mnist", (server.as_uri() + "/", files))
    s = load("mnist", "test", prepared_dir=tmp_path / "p", as_uint8=True)
    assert s.images[:, 0, 0, 0].tolist() == [100, 101, 102, 103]
    lines = capsys.readouterr().err.splitlines()
    assert [line.split()[0] for line in lines] == ["downloading", "preparing"], lines
    assert (tmp_path / "p" / "downloads" / "mnist" / "t10k-images-idx3-ubyte.gz").is_file()
    bad = ((files[0][0], "0" * 64),) + files[1:]
    monkeypatch.setitem(download_module.DOWNLOADS, "fashion_mnist", (server.as_uri() + "/", bad))
    with pytest.raises(DataNotFoundError, match=f"could not be downloaded .*{files[0][0]} has sha256 "
                                                f"{files[0][1]}, expected 0000"):
        load("fashion_mnist", "test", prepared_dir=tmp_path / "p", progress=False)
    assert not list((tmp_path / "p" / "downloads" / "fashion_mnist").iterdir())   # no half-written file kept


def test_errors(tmp_path, tiny_mnist, monkeypatch):
    with pytest.raises(ValueError, match="unknown dataset name 'mnsit'.*'mnist', 'fashion_mnist', 'cifar10'"):
        load("mnsit", "train")
    with pytest.raises(DataNotFoundError, match="t10k-labels-idx1-ubyte.gz.*--data-dir"):
        load("mnist", "train", data_dir=tmp_path, prepared_dir=tmp_path / "p")
    monkeypatch.setattr(download_module, "can_reach", lambda url: False)
    with pytest.raises(DataNotFoundError, match="could not be downloaded.*cannot reach https://www.cs.toronto"):
        load("cifar10", "train", prepared_dir=tmp_path / "p")
    with pytest.raises(DataNotFoundError, match="download=False.*cnnjax data import"):
        load("cifar10", "train", prepared_dir=tmp_path / "p", download=False)
    source, prepared = tiny_mnist
    with pytest.raises(ValueError, match="split 'validation' is not in dataset 'mnist'.*\\['test', 'train'\\]"):
        load("mnist", "validation", data_dir=source, prepared_dir=prepared, progress=False)
    with pytest.raises(ValueError, match="validation_fraction=0.1 .* apply to image folders only"):
        load("mnist", "train", validation_fraction=0.1)
    with pytest.raises(ValueError, match="data_format='NHWC'.*channels_last"):
        load("mnist", "train", data_format="NHWC")


def test_corrupt_source_is_reported_not_cached(tmp_path):
    source = write_idx_set(tmp_path / "mnist")
    data = (source / "train-images-idx3-ubyte.gz").read_bytes()
    (source / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(gzip.decompress(data)[:-100]))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz' is truncated"):
        load("mnist", "train", data_dir=tmp_path, prepared_dir=tmp_path / "p", progress=False)
    assert not list((tmp_path / "p").rglob("*.npz"))


def test_earlier_cache_in_tfds_hashed_order_is_put_back_in_file_order(tiny_mnist, tmp_path):
    """A cache written before the file order (no 'order' entry) holds tfds' stored order: rows sorted by
    tfds' own hash of (split name, record index) -- computed here with tfds' Hasher, independently of cnnjax."""
    hashing = pytest.importorskip("tensorflow_datasets.core.hashing")
    source, prepared = tiny_mnist
    files = load("mnist", "train", data_dir=source, prepared_dir=prepared, as_uint8=True, progress=False)
    hasher = hashing.Hasher("train")
    stored = sorted(range(30), key=hasher.hash_key)   # tfds' Shuffler: ascending hashed key
    path = tmp_path / "old" / "_cnnjax_arrays" / "mnist" / "3.0.1" / "train.npz"
    path.parent.mkdir(parents=True)
    np.savez(path, images=files.images[stored], labels=files.labels[stored],
             class_names=np.asarray(json.dumps(list(files.class_names))))
    again = load("mnist", "train", prepared_dir=tmp_path / "old", download=False, as_uint8=True, progress=False)
    np.testing.assert_array_equal(again.images, files.images)
    np.testing.assert_array_equal(again.labels, files.labels)
    with np.load(path) as f:
        assert str(f["order"]) == "files"   # rewritten once


def test_truncated_cache_is_rebuilt_with_a_warning(tiny_mnist):
    source, prepared = tiny_mnist
    first = load("mnist", "test", data_dir=source, prepared_dir=prepared, as_uint8=True, progress=False)
    cache = Path(prepared) / "_cnnjax_arrays" / "mnist" / "3.0.1" / "test.npz"
    cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])
    for load_number in (1, 2):   # the first load warns and rebuilds; the second reads the new cache silently
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            again = load("mnist", "test", data_dir=source, prepared_dir=prepared, as_uint8=True, progress=False)
        messages = [str(w.message) for w in caught if "array cache" in str(w.message)]
        if load_number == 1:
            assert len(messages) == 1 and str(cache) in messages[0] and "deleting it" in messages[0], messages
        else:
            assert messages == []
        np.testing.assert_array_equal(again.images, first.images)
        np.testing.assert_array_equal(again.labels, first.labels)
        assert cache.is_file()


def test_out_of_range_idx_label_named_not_dumped(tmp_path):
    source = write_idx_set(tmp_path / "mnist")
    labels = np.arange(30) % 10
    labels[7] = 12
    (source / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    with pytest.raises(ValueError) as info:
        load("mnist", "train", data_dir=tmp_path, prepared_dir=tmp_path / "p", progress=False)
    message = str(info.value)
    assert "\n" not in message and len(message) < 300, message
    assert "train-labels-idx1-ubyte.gz' has label 12 at record 7" in message


needs_shared = pytest.mark.skipif(not (SHARED / "mnist").is_dir(),
                                  reason=f"shared data not found at {SHARED} (set CNNJAX_SHARED_DATA)")


@needs_shared
def test_real_mnist_in_the_files_order(tmp_path):
    """MNIST's test set starts 7, 2, 1, 0, 4 in the distribution files (and in every other MNIST reader); tfds'
    hashed order started it with a 2."""
    s = load("mnist", "test", data_dir=SHARED, prepared_dir=tmp_path, as_uint8=True, progress=False)
    assert s.labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert np.bincount(s.labels, minlength=10).tolist() == TEST_COUNTS
    train = load("mnist", "train", prepared_dir=tmp_path, download=False, progress=False)   # prepared together
    assert train.labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert np.bincount(train.labels, minlength=10).tolist() == TRAIN_COUNTS
    assert float(train.images.mean()) == pytest.approx(0.1307, abs=5e-5)


@pytest.mark.slow
@pytest.mark.long
@pytest.mark.skipif(not (SHARED / "cifar10-jpeg.tar.xz").is_file(), reason=f"no cifar10-jpeg.tar.xz in {SHARED}")
def test_real_cifar10_full_import(tmp_path_factory):
    prepared = tmp_path_factory.mktemp("cifar")
    for split, per_class in (("train", 5000), ("test", 1000)):
        s = load("cifar10", split, data_dir=SHARED, prepared_dir=prepared, as_uint8=True, progress=False)
        assert s.images.shape == (10 * per_class, 32, 32, 3)
        assert np.bincount(s.labels, minlength=10).tolist() == [per_class] * 10


def test_cifar10_from_unpacked_image_folder_tree(tmp_path):
    from PIL import Image

    for split, n in (("train", 2), ("test", 1)):
        for k, cls in enumerate(CIFAR10_CLASSES):
            (tmp_path / "cifar10" / split / cls).mkdir(parents=True)
            for j in range(n):
                path = tmp_path / "cifar10" / split / cls / f"{j}.png"
                Image.fromarray(np.full((32, 32, 3), 20 * k + j, np.uint8)).save(path)
    s = load("cifar10", "train", data_dir=tmp_path, prepared_dir=tmp_path / "p", as_uint8=True, progress=False)
    assert s.images.shape == (20, 32, 32, 3)
    np.testing.assert_array_equal(s.images[:, 0, 0, 0] // 20, s.labels)  # pixel value says the class


@pytest.mark.slow
def test_concurrent_imports_into_one_dir(tmp_path):
    """Two processes importing into the same data dir (pytest -n 2, parallel jobs) both succeed."""
    import subprocess
    import sys

    write_idx_set(tmp_path / "src" / "mnist", n_train=40, n_test=10)
    code = ("import sys; from cnnjax.data import load; "
            "s = load('mnist', 'train', data_dir=sys.argv[1], prepared_dir=sys.argv[2], progress=False); "
            "print(len(s.labels))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "src"), str(tmp_path / "p")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-1500:] for o in outs]
    assert [o[0].split()[-1] for o in outs] == ["40", "40"]


@pytest.mark.parametrize("value, loud", [(None, False), ("", False), ("0", False), ("1", True), ("yes", True)])
def test_cnnjax_verbose_asks_for_tensorflows_own_output(monkeypatch, value, loud):
    from cnnjax.data.quiet import ENV_VERBOSE, bar_disabled, verbose

    if value is None:
        monkeypatch.delenv(ENV_VERBOSE, raising=False)
    else:
        monkeypatch.setenv(ENV_VERBOSE, value)
    assert verbose() is loud
    assert bar_disabled(False) is True and bar_disabled(True) is None   # None: tqdm shows a bar on a terminal only
