"""CIFAR-10 readers: crafted python/binary/image-folder archives with known pixels, corrupt archives, and the
real JPEG archive (counts by listing the archive; pixels of a subset checked against PIL directly)."""
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnjax.data.cifar import CIFAR10_CLASSES, read_cifar10

SHARED = Path(os.environ.get("CNNJAX_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
ARCHIVE = SHARED / "cifar10-jpeg.tar.xz"
needs_archive = pytest.mark.skipif(not ARCHIVE.is_file(), reason=f"{ARCHIVE} not found (set CNNJAX_SHARED_DATA)")


def _add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def crafted_batches(seed=0, per_batch=3):
    """Six tiny batches of random images: {basename: (images NHWC uint8, labels)}."""
    rng = np.random.default_rng(seed)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    return {n: (rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, per_batch))
            for n in names}


def write_binary_tar(path, batches):
    with tarfile.open(path, "w:gz") as tar:
        for n, (x, y) in batches.items():
            # record = label byte, then red plane, green plane, blue plane (each 32x32 row-major)
            records = b"".join(bytes([int(l)]) + x[i][:, :, 0].tobytes() + x[i][:, :, 1].tobytes()
                               + x[i][:, :, 2].tobytes() for i, l in enumerate(y))
            _add(tar, f"cifar-10-batches-bin/{n}.bin", records)


def write_python_tar(path, batches):
    with tarfile.open(path, "w:gz") as tar:
        for n, (x, y) in batches.items():
            rows = np.stack([np.concatenate([im[:, :, c].ravel() for c in range(3)]) for im in x])
            _add(tar, f"cifar-10-batches-py/{n}", pickle.dumps({b"data": rows, b"labels": [int(v) for v in y]}))


@pytest.mark.parametrize("writer", [write_binary_tar, write_python_tar])
def test_batch_archives_give_known_pixels(tmp_path, writer):
    batches = crafted_batches()
    path = tmp_path / "cifar.tar.gz"
    writer(path, batches)
    splits = read_cifar10(path, progress=False)
    train_x = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    train_y = np.concatenate([batches[f"data_batch_{i}"][1] for i in range(1, 6)])
    np.testing.assert_array_equal(splits["train"][0], train_x)
    np.testing.assert_array_equal(splits["train"][1], train_y)
    np.testing.assert_array_equal(splits["test"][0], batches["test_batch"][0])
    assert splits["test"][1].dtype == np.int32


def test_truncated_binary_batch(tmp_path):
    batches = crafted_batches()
    path = tmp_path / "c.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for n in batches:
            _add(tar, f"cifar-10-batches-bin/{n}.bin", b"\x01" * (3073 * 2 - 5))
    with pytest.raises(ValueError, match="not a positive multiple of the 3073-byte"):
        read_cifar10(path, progress=False)


def test_incomplete_archive_names_missing_batch(tmp_path):
    batches = crafted_batches()
    del batches["data_batch_3"]
    path = tmp_path / "c.tar.gz"
    write_binary_tar(path, batches)
    with pytest.raises(ValueError, match="lacks the batch file 'data_batch_3.bin'"):
        read_cifar10(path, progress=False)


def test_corrupt_archive(tmp_path):
    good = tmp_path / "good.tar.gz"
    write_binary_tar(good, crafted_batches())
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt archive"):
        read_cifar10(bad, progress=False)
    junk = tmp_path / "junk.tar.xz"
    junk.write_bytes(b"this is not an archive at all" * 20)
    with pytest.raises(ValueError, match="truncated or corrupt archive"):
        read_cifar10(junk, progress=False)


def test_image_folder_tar_with_corrupt_jpeg_names_it(tmp_path):
    path = tmp_path / "f.tar"
    png = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), 7, np.uint8)).save(png, format="PNG")
    with tarfile.open(path, "w") as tar:
        for split in ("train", "test"):
            _add(tar, f"{split}/cat/0.png", png.getvalue())
        _add(tar, "train/dog/1.jpg", b"\xff\xd8 broken jpeg")
    with pytest.raises(ValueError, match="train/dog/1.jpg"):
        read_cifar10(path, progress=False)


def test_image_folder_tar_unknown_class(tmp_path):
    path = tmp_path / "f.tar"
    with tarfile.open(path, "w") as tar:
        _add(tar, "train/unicorn/0.png", b"x")
    with pytest.raises(ValueError, match="class folder 'unicorn'"):
        read_cifar10(path, progress=False)


@needs_archive
def test_real_archive_counts_by_listing():
    """Independent of our reader: count the archive's members per split and class."""
    counts = {}
    with tarfile.open(ARCHIVE, "r|xz") as tar:
        for m in tar:
            parts = m.name.split("/")
            if m.isfile():
                counts[(parts[0], parts[1])] = counts.get((parts[0], parts[1]), 0) + 1
    assert {c for _, c in counts} == set(CIFAR10_CLASSES)
    assert all(counts[("train", c)] == 5000 for c in CIFAR10_CLASSES)
    assert all(counts[("test", c)] == 1000 for c in CIFAR10_CLASSES)


@needs_archive
def test_real_archive_subset_pixels_match_pil():
    splits = read_cifar10(ARCHIVE, limit_per_class=3, progress=False)
    x, y = splits["train"]
    assert x.shape == (30, 32, 32, 3) and x.dtype == np.uint8
    assert np.bincount(y, minlength=10).tolist() == [3] * 10
    assert splits["test"][0].shape == (30, 32, 32, 3)
    # first train member in the archive is train/bird/0338.jpg (see README listing): decode it with PIL directly
    with tarfile.open(ARCHIVE, "r|xz") as tar:
        for m in tar:
            if m.isfile():
                first_name, first = m.name, np.asarray(Image.open(tar.extractfile(m)).convert("RGB"))
                break
    cls = first_name.split("/")[1]
    assert y[0] == CIFAR10_CLASSES.index(cls)
    np.testing.assert_array_equal(x[0], first)
    assert 0.3 < x.mean() / 255 < 0.7
