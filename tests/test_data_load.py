"""`load` and `import_dataset` end to end: crafted distribution files -> tfds prepared dataset -> arrays, read back
by plain tfds calls too; the array cache; the download path under tfds.testing.mock_data; every error case.
Real-data end-to-end imports are marked slow (the fast checks of the real files are in test_data_idx/cifar)."""
import gzip
import importlib
import io
import os
import struct
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from cnnjax.data import DataNotFoundError, import_dataset, load, prepared_path
from cnnjax.data.cifar import CIFAR10_CLASSES

load_module = importlib.import_module("cnnjax.data.load")  # the module (cnnjax.data.load is the function)
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


def test_tiny_mnist_import_load_and_plain_tfds(tiny_mnist):
    source, prepared = tiny_mnist
    s = load("mnist", "train", data_dir=source, prepared_dir=prepared, progress=False)
    assert s.images.shape == (30, 28, 28, 1) and s.images.dtype == np.float32 and s.labels.dtype == np.int32
    values = np.round(s.images[:, 0, 0, 0] * 255).astype(int)
    assert sorted(values.tolist()) == list(range(30))  # every image exactly once (tfds stores in hashed order)
    np.testing.assert_array_equal(s.labels, values % 10)  # and each keeps its own label
    assert s.class_names == tuple(str(k) for k in range(10))
    t = load("mnist", "test", data_dir=source, prepared_dir=prepared, as_uint8=True, progress=False)
    assert t.images.dtype == np.uint8 and sorted(t.images[:, 5, 5, 0].tolist()) == list(range(100, 110))
    # plain tfds reads the prepared dataset, by name + data_dir and by directory
    ds = tfds.load("mnist", split="train", data_dir=str(prepared), download=False, batch_size=-1)
    assert sorted(tfds.as_numpy(ds)["image"][:, 0, 0, 0].tolist()) == list(range(30))
    builder = tfds.builder_from_directory(prepared_path("mnist", prepared))
    assert builder.info.splits["test"].num_examples == 10 and str(builder.info.version) == "3.0.1"


def test_cache_gives_identical_arrays_and_nchw(tiny_mnist):
    source, prepared = tiny_mnist
    first = load("mnist", "train", data_dir=source, prepared_dir=prepared, progress=False)
    cache = Path(prepared) / "_cnnjax_arrays" / "mnist" / "3.0.1" / "train.npz"
    assert cache.is_file()
    again = load("mnist", "train", prepared_dir=prepared, download=False, data_format="channels_first",
                 progress=False)  # no data_dir needed once prepared
    assert again.images.shape == (30, 1, 28, 28)
    np.testing.assert_array_equal(again.images[:, 0], first.images[..., 0])
    np.testing.assert_array_equal(again.labels, first.labels)
    big = load("mnist", "train", prepared_dir=prepared, image_size=(32, 32), progress=False)
    assert big.images.shape == (30, 32, 32, 1)
    # a data_dir that does not exist is a mistake even where the cache would serve (it was silently ignored)
    with pytest.raises(DataNotFoundError, match=r"data_dir '.*typo' is not a folder"):
        load("mnist", "train", data_dir=str(Path(source) / "typo"), prepared_dir=prepared, progress=False)
    np.testing.assert_allclose(big.images[:, 16, 16, 0], first.images[:, 0, 0, 0], atol=1e-6)  # solid stays solid


def test_fashion_mnist_from_files_in_data_dir_itself(tmp_path):
    source = write_idx_set(tmp_path / "files", n_train=12, n_test=4)
    s = load("fashion_mnist", "test", data_dir=source, prepared_dir=tmp_path / "p", progress=False)
    assert s.images.shape == (4, 28, 28, 1) and s.class_names[0] == "T-shirt/top" and s.class_names[9] == "Ankle boot"


def test_cifar10_from_binary_tarball(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (6, 2, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, (6, 2))
    with tarfile.open(tmp_path / "cifar-10-binary.tar.gz", "w:gz") as tar:
        for b, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
            data = b"".join(bytes([int(y[b, i])]) + x[b, i].transpose(2, 0, 1).tobytes() for i in range(2))
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}.bin")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    s = load("cifar10", "train", data_dir=tmp_path, prepared_dir=tmp_path / "p", as_uint8=True, progress=False)
    assert s.class_names == CIFAR10_CLASSES and s.images.shape == (10, 32, 32, 3)
    expected = {x[b, i].tobytes(): int(y[b, i]) for b in range(5) for i in range(2)}
    assert {im.tobytes(): int(l) for im, l in zip(s.images, s.labels)} == expected  # lossless, labels kept
    ds = tfds.load("cifar10", split="test", data_dir=str(tmp_path / "p"), download=False, batch_size=-1)
    assert tfds.as_numpy(ds)["image"].shape == (2, 32, 32, 3)


@pytest.mark.parametrize("name, shape", [("mnist", (8, 28, 28, 1)), ("fashion_mnist", (8, 28, 28, 1)),
                                         ("cifar10", (8, 32, 32, 3))])
def test_download_path_with_mock_data(tmp_path, monkeypatch, name, shape):
    monkeypatch.setattr(load_module, "_can_reach", lambda url: True)  # the mock needs no network
    with tfds.testing.mock_data(num_examples=8):
        s = load(name, "train", prepared_dir=tmp_path, progress=False)
    assert s.images.shape == shape and s.images.dtype == np.float32
    assert 0.0 <= s.images.min() and s.images.max() <= 1.0
    assert s.labels.dtype == np.int32 and len(s.class_names) == 10


def test_errors(tmp_path, tiny_mnist, monkeypatch):
    with pytest.raises(ValueError, match="unknown dataset name 'mnsit'.*'mnist', 'fashion_mnist', 'cifar10'"):
        load("mnsit", "train")
    with pytest.raises(DataNotFoundError, match="t10k-labels-idx1-ubyte.gz.*--data-dir"):
        load("mnist", "train", data_dir=tmp_path, prepared_dir=tmp_path / "p")
    monkeypatch.setattr(load_module, "_can_reach", lambda url: False)
    with pytest.raises(DataNotFoundError, match="could not download it.*cannot reach https://www.cs.toronto"):
        load("cifar10", "train", prepared_dir=tmp_path / "p")
    with pytest.raises(DataNotFoundError, match="download=False.*cnnjax data import"):
        load("cifar10", "train", prepared_dir=tmp_path / "p", download=False)
    with pytest.raises(DataNotFoundError, match="cifar10-jpeg.tar.xz"):
        import_dataset("cifar10", tmp_path, data_dir=tmp_path / "p")
    with pytest.raises(ValueError, match="unknown dataset name 'svhn'"):
        import_dataset("svhn", tmp_path, data_dir=tmp_path / "p")
    source, prepared = tiny_mnist
    with pytest.raises(ValueError, match="split 'validation' is not in dataset 'mnist'.*\\['test', 'train'\\]"):
        load("mnist", "validation", data_dir=source, prepared_dir=prepared, progress=False)
    with pytest.raises(ValueError, match="validation_fraction=0.1 .* apply to image folders only"):
        load("mnist", "train", validation_fraction=0.1)
    with pytest.raises(ValueError, match="data_format='NHWC'.*channels_last"):
        load("mnist", "train", data_format="NHWC")


def test_corrupt_source_is_reported_not_imported(tmp_path):
    source = write_idx_set(tmp_path / "mnist")
    data = (source / "train-images-idx3-ubyte.gz").read_bytes()
    (source / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(gzip.decompress(data)[:-100]))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz' is truncated"):
        load("mnist", "train", data_dir=tmp_path, prepared_dir=tmp_path / "p", progress=False)
    assert not (tmp_path / "p" / "mnist" / "3.0.1" / "dataset_info.json").exists()


def test_truncated_cache_is_rebuilt_with_a_warning(tiny_mnist):
    source, prepared = tiny_mnist
    first = load("mnist", "test", data_dir=source, prepared_dir=prepared, as_uint8=True, progress=False)
    cache = Path(prepared) / "_cnnjax_arrays" / "mnist" / "3.0.1" / "test.npz"
    cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])
    for load_number in (1, 2):   # the first load warns and rebuilds; the second reads the new cache silently
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            again = load("mnist", "test", prepared_dir=prepared, download=False, as_uint8=True, progress=False)
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


@pytest.mark.slow
@pytest.mark.long
@needs_shared
def test_real_mnist_end_to_end(tmp_path_factory):
    prepared = tmp_path_factory.mktemp("real")
    s = load("mnist", "train", data_dir=SHARED, prepared_dir=prepared, progress=False)
    assert s.images.shape == (60000, 28, 28, 1)
    assert np.bincount(s.labels, minlength=10).tolist() == TRAIN_COUNTS
    assert float(s.images.mean()) == pytest.approx(0.1307, abs=5e-5)
    ds = tfds.load("mnist", split="test", data_dir=str(prepared), download=False, batch_size=-1)
    assert np.bincount(tfds.as_numpy(ds)["label"], minlength=10).tolist() == TEST_COUNTS


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


def test_tfds_image_folder_reads_the_same_layout(tmp_path):
    """Our split layout is tfds.ImageFolder's: both see the same classes and counts."""
    from PIL import Image

    from cnnjax.data.folder import load_image_folder

    for split, n in (("train", 3), ("test", 2)):
        for cls in ("dogs", "cats"):
            (tmp_path / split / cls).mkdir(parents=True)
            for j in range(n):
                Image.fromarray(np.full((4, 4, 3), j, np.uint8)).save(tmp_path / split / cls / f"{j}.png")
    builder = tfds.ImageFolder(str(tmp_path))
    ours = load_image_folder(tmp_path, "train", progress=False)
    assert tuple(builder.info.features["label"].names) == ours[2] == ("cats", "dogs")
    assert builder.info.splits["train"].num_examples == len(ours[1]) == 6


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
