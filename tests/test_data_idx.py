"""IDX parsing: crafted files with hand-written headers, every corruption case, and the real MNIST numbers."""
import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from cnnjax.data.idx import read_idx, read_idx_pair

SHARED = Path(os.environ.get("CNNJAX_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
needs_shared = pytest.mark.skipif(
    not (SHARED / "mnist").is_dir(), reason=f"shared data not found at {SHARED} (set CNNJAX_SHARED_DATA)"
)
# From ../shared/data/README.md (the original MNIST).
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """IDX file bytes written by hand: 0, 0, type, ndim, big-endian uint32 sizes, then the values."""
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def test_round_trip_plain_and_gzip(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx_bytes(images))
    (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes(images)))
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), images)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), images)


def test_big_endian_int32_values(tmp_path):
    values = np.array([1, -2, 70000], dtype=np.int32)
    (tmp_path / "v").write_bytes(idx_bytes(values, type_code=0x0C))
    out = read_idx(tmp_path / "v")
    assert out.tolist() == [1, -2, 70000]


def test_header_bytes_match_mnist_magic():
    data = idx_bytes(np.zeros((1, 28, 28), np.uint8))
    assert int.from_bytes(data[:4], "big") == 0x00000803


@pytest.mark.parametrize(
    "data, match",
    [
        (b"\x00\x00", "fewer than the 4-byte"),
        (b"\x12\x34\x08\x01" + b"\x00" * 8, "magic number 0x12340801"),
        (b"\x00\x00\x07\x01" + b"\x00" * 8, "magic number 0x00000701"),
        (b"\x00\x00\x08\x03\x00\x00", "truncated inside its header"),
        (idx_bytes(np.zeros((5, 2, 2), np.uint8))[:-1], "truncated: header says shape \\(5, 2, 2\\)"),
        (idx_bytes(np.zeros((5,), np.uint8)) + b"\x00", "trailing bytes"),
    ],
)
def test_corrupt_files_raise_naming_the_file(tmp_path, data, match):
    path = tmp_path / "bad-idx"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=match) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_truncated_gzip(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((100, 28, 28), np.uint8)))[:-30])
    with pytest.raises(ValueError, match="truncated or corrupt gzip"):
        read_idx(path)


def test_pair_count_mismatch(tmp_path):
    (tmp_path / "i").write_bytes(idx_bytes(np.zeros((3, 2, 2), np.uint8)))
    (tmp_path / "l").write_bytes(idx_bytes(np.zeros((4,), np.uint8)))
    with pytest.raises(ValueError, match="3 images .* but 4 labels"):
        read_idx_pair(tmp_path / "i", tmp_path / "l")


def test_pair_swapped_files(tmp_path):
    (tmp_path / "i").write_bytes(idx_bytes(np.zeros((3, 2, 2), np.uint8)))
    (tmp_path / "l").write_bytes(idx_bytes(np.zeros((3,), np.uint8)))
    with pytest.raises(ValueError, match="expected uint8 of shape \\(n, height, width\\)"):
        read_idx_pair(tmp_path / "l", tmp_path / "i")


@needs_shared
def test_real_mnist_counts_and_mean():
    d = SHARED / "mnist"
    x, y = read_idx_pair(d / "train-images-idx3-ubyte.gz", d / "train-labels-idx1-ubyte.gz")
    assert x.shape == (60000, 28, 28, 1) and x.dtype == np.uint8 and y.dtype == np.int32
    assert np.bincount(y, minlength=10).tolist() == TRAIN_COUNTS
    assert x.mean() == pytest.approx(33.318, abs=5e-4)
    assert (x / 255.0).mean() == pytest.approx(0.1307, abs=5e-5)
    xt, yt = read_idx_pair(d / "t10k-images-idx3-ubyte.gz", d / "t10k-labels-idx1-ubyte.gz")
    assert xt.shape == (10000, 28, 28, 1)
    assert np.bincount(yt, minlength=10).tolist() == TEST_COUNTS
