"""Reading IDX files, the format of the MNIST and Fashion-MNIST distribution files.

Layout (big-endian), as published with MNIST:

    bytes 0-1   0x00 0x00
    byte  2     type code: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64
    byte  3     number of dimensions d
    bytes 4..   d sizes, each a big-endian uint32
    then        prod(sizes) values of the type, row-major

So the images file `train-images-idx3-ubyte` starts with magic 0x00000803 (uint8, 3 dims: n, 28, 28) and the
labels file `train-labels-idx1-ubyte` with 0x00000801 (uint8, 1 dim: n). Files may be gzip-compressed (`.gz`).
"""
from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: str) -> bytes:
    """The file's bytes, gunzipped when it is a gzip file (detected by its 0x1f 0x8b header, not its name)."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as err:
        raise ValueError(
            f"read_idx: {path!r} is a truncated or corrupt gzip file ({err}); download or copy it again."
        ) from err


def parse_idx(data: bytes, *, name: str = "<bytes>") -> np.ndarray:
    """Parse the bytes of one (uncompressed) IDX file into an array of shape `sizes` in native byte order.

    Raises ValueError naming `name` for a bad magic number, an unknown type code, or a length that does not
    equal header + prod(sizes) * itemsize (truncated file or trailing bytes).
    """
    if len(data) < 4:
        raise ValueError(f"read_idx: {name!r} has {len(data)} bytes, fewer than the 4-byte IDX magic number.")
    magic = int.from_bytes(data[:4], "big")
    type_code, ndim = data[2], data[3]
    if data[0] != 0 or data[1] != 0 or type_code not in _IDX_DTYPES or ndim == 0:
        raise ValueError(
            f"read_idx: {name!r} has magic number 0x{magic:08X}, which is not an IDX header; expected "
            f"0x00000803 for images or 0x00000801 for labels (bytes 0-1 zero, byte 2 a type code in "
            f"{sorted(hex(c) for c in _IDX_DTYPES)}, byte 3 the number of dimensions > 0)."
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"read_idx: {name!r} is truncated inside its header ({len(data)} of {header} bytes).")
    sizes = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[type_code]
    expected = header + int(np.prod(sizes, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says (trailing bytes)"
        raise ValueError(
            f"read_idx: {name!r} is {what}: header says shape {sizes} of {dtype.name}, i.e. {expected} bytes, "
            f"but the file has {len(data)} bytes; download or copy it again."
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(sizes)
    return array.astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (optionally gzip-compressed) into a numpy array; see the module docstring for the layout."""
    path = os.fspath(path)
    return parse_idx(_read_bytes(path), name=path)


def read_idx_pair(images_path: str | os.PathLike, labels_path: str | os.PathLike, *,
                  num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read an images file (n, h, w) uint8 and its labels file (n,) and check that they match.

    Returns images (n, h, w, 1) uint8 (NHWC with one channel) and labels (n,) int32. With ``num_classes``, a
    label outside ``[0, num_classes)`` raises a one-line ValueError naming the labels file, the record index
    and the value.
    """
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"read_idx_pair: images file {os.fspath(images_path)!r} holds {images.dtype.name} of shape "
            f"{images.shape}; expected uint8 of shape (n, height, width) (magic 0x00000803)."
        )
    if labels.ndim != 1:
        raise ValueError(
            f"read_idx_pair: labels file {os.fspath(labels_path)!r} has shape {labels.shape}; expected (n,) "
            f"(magic 0x00000801)."
        )
    if labels.dtype.kind not in "iu":
        raise ValueError(
            f"read_idx_pair: labels file {os.fspath(labels_path)!r} holds {labels.dtype.name} values; class labels "
            f"must be integers (magic 0x00000801, uint8)."
        )
    if len(images) != len(labels):
        raise ValueError(
            f"read_idx_pair: {len(images)} images in {os.fspath(images_path)!r} but {len(labels)} labels in "
            f"{os.fspath(labels_path)!r}; the two files must come from the same split."
        )
    if num_classes is not None and labels.size:
        bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"read_idx_pair: labels file {os.fspath(labels_path)!r} has label {labels[i].item()!r} at record "
                f"{i} (of {len(labels)}; {bad.size} out of range in all), outside 0..{num_classes - 1}; the "
                f"file is corrupt or not a {num_classes}-class labels file."
            )
    return images[..., None], labels.astype(np.int32)
