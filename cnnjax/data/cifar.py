"""Reading CIFAR-10 from its distribution files, with no network.

Accepted sources (each gives splits "train" (50,000) and "test" (10,000), images (n, 32, 32, 3) uint8 NHWC,
labels (n,) int32 indexing `CIFAR10_CLASSES`):

- `cifar-10-python.tar.gz` (or its unpacked `cifar-10-batches-py/`): pickled batches, `data` (10000, 3072) uint8
  rows laid out channel-major (1024 red, 1024 green, 1024 blue, each 32x32 row-major), `labels` a list.
- `cifar-10-binary.tar.gz` (or `cifar-10-batches-bin/`): records of 3073 bytes, 1 label byte + 3072 pixel bytes
  in the same channel-major order.
- an image-folder archive such as `cifar10-jpeg.tar.xz`, or its unpacked tree: `[top/]train/<class>/*.jpg`,
  `[top/]test/<class>/*.jpg`, class folders named as in `CIFAR10_CLASSES`; decoded with PIL.
"""
from __future__ import annotations

import io
import os
import pickle
import tarfile
import zlib

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from cnnjax.data.folder import to_8bit
from cnnjax.data.quiet import bar_disabled
from cnnjax.data.sources import CLASS_NAMES

CIFAR10_CLASSES = CLASS_NAMES["cifar10"]
_RECORD = 1 + 32 * 32 * 3
_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def _channel_major_to_nhwc(rows: np.ndarray) -> np.ndarray:
    """(n, 3072) rows in CIFAR's channel-major order -> (n, 32, 32, 3) NHWC."""
    return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def parse_binary_batch(data: bytes, *, name: str = "<bytes>") -> tuple[np.ndarray, np.ndarray]:
    """One `data_batch_k.bin` / `test_batch.bin`: n records of 3073 bytes -> images (n,32,32,3), labels (n,)."""
    if len(data) == 0 or len(data) % _RECORD:
        raise ValueError(
            f"read_cifar10: {name!r} has {len(data)} bytes, not a positive multiple of the {_RECORD}-byte "
            f"CIFAR-10 record (1 label byte + 3072 pixel bytes); the file is truncated or not a CIFAR-10 batch."
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, _RECORD)
    labels = records[:, 0].astype(np.int32)
    if labels.max() >= len(CIFAR10_CLASSES):
        raise ValueError(f"read_cifar10: {name!r} holds label {labels.max()}, outside 0..9; not a CIFAR-10 batch.")
    return _channel_major_to_nhwc(records[:, 1:]), labels


def parse_python_batch(data: bytes, *, name: str = "<bytes>") -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch of `cifar-10-python.tar.gz` -> images (n,32,32,3) uint8, labels (n,) int32."""
    try:
        batch = pickle.loads(data, encoding="bytes")
        rows = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int32)
    except Exception as err:  # pickle raises many types for damaged input
        raise ValueError(f"read_cifar10: {name!r} is not a readable CIFAR-10 python batch ({err!r}).") from err
    if rows.ndim != 2 or rows.shape[1] != 3072 or len(rows) != len(labels):
        raise ValueError(
            f"read_cifar10: {name!r} holds data of shape {rows.shape} and {len(labels)} labels; expected "
            f"(n, 3072) and n labels."
        )
    return _channel_major_to_nhwc(rows), labels


def _concat(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _read_batches(read, kind: str, where: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Splits from batch files read by `read(basename) -> bytes` (python or binary kind)."""
    suffix, parse = (".bin", parse_binary_batch) if kind == "binary" else ("", parse_python_batch)
    out = {}
    for split, names in (("train", _TRAIN_BATCHES), ("test", ("test_batch",))):
        out[split] = _concat([parse(read(n + suffix), name=f"{where}:{n}{suffix}") for n in names])
    return out


def _image_member_key(name: str) -> tuple[str, str] | None:
    """'[top/]train/cat/0001.jpg' -> ('train', 'cat'); None for anything that is not such an image file."""
    parts = name.replace("\\", "/").strip("/").split("/")
    if len(parts) < 3 or not parts[-1].lower().endswith(_IMAGE_SUFFIXES):
        return None
    return parts[-3], parts[-2]


def decode_image(data: bytes, *, name: str, mode: str = "RGB") -> np.ndarray:
    """Decode one image file's bytes with PIL into (h, w, c) uint8; ValueError naming the file if unreadable.
    16-bit and float [0, 1] images are scaled to 8 bits, other high-depth modes refused
    (:func:`cnnjax.data.folder.to_8bit`)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(to_8bit(image).convert(mode), dtype=np.uint8)
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError ... for damaged files
        raise ValueError(f"cannot decode image {name!r}: {err}") from err


def _read_tar(
    path: str, *, limit_per_class: int | None, progress: bool
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """One streaming pass over a CIFAR-10 archive: batch files (python/binary) or `[top/]split/class/file` images.

    `limit_per_class` keeps only the first k image files of each (split, class) in archive order (quick tests).
    """
    batches: dict[str, bytes] = {}
    images: dict[str, list] = {}
    labels: dict[str, list] = {}
    counts: dict[tuple[str, str], int] = {}
    batch_names = {n + s for n in _TRAIN_BATCHES + ("test_batch",) for s in ("", ".bin")}
    try:
        with tarfile.open(path, "r|*") as archive, tqdm(
            desc=f"reading {os.path.basename(path)}", unit=" files", disable=bar_disabled(progress)
        ) as bar:
            for member in archive:
                if not member.isfile():
                    continue
                base = os.path.basename(member.name)
                if base in batch_names:
                    batches[base] = archive.extractfile(member).read()
                    bar.update(1)
                    continue
                key = _image_member_key(member.name)
                if not key:
                    continue
                split, cls = key
                if cls not in CIFAR10_CLASSES:
                    raise ValueError(
                        f"read_cifar10: {path!r} member {member.name!r} is in class folder {cls!r}; CIFAR-10 "
                        f"class folders are {CIFAR10_CLASSES}."
                    )
                if limit_per_class is not None and counts.get(key, 0) >= limit_per_class:
                    continue
                counts[key] = counts.get(key, 0) + 1
                data = archive.extractfile(member).read()
                images.setdefault(split, []).append(decode_image(data, name=f"{path}:{member.name}"))
                labels.setdefault(split, []).append(CIFAR10_CLASSES.index(cls))
                bar.update(1)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise ValueError(f"read_cifar10: {path!r} is a truncated or corrupt archive ({err}).") from err
    if "test_batch" in batches or "test_batch.bin" in batches:
        kind = "binary" if "test_batch.bin" in batches else "python"

        def read(base):
            if base not in batches:
                raise ValueError(f"read_cifar10: {path!r} lacks the batch file {base!r}; the archive is incomplete.")
            return batches[base]

        return _read_batches(read, kind, path)
    missing = {"train", "test"} - set(images)
    if missing:
        raise ValueError(
            f"read_cifar10: {path!r} has no images for split(s) {sorted(missing)}; expected CIFAR-10 batch files "
            f"or members '[top/]train/<class>/<file>' and '[top/]test/<class>/<file>'."
        )
    return {s: (np.stack(images[s]), np.asarray(labels[s], dtype=np.int32)) for s in ("train", "test")}


def _read_folder_tree(path: str, *, progress: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """CIFAR-10 from an unpacked image-folder tree `path/{train,test}/<class>/<image>` (32x32 RGB images)."""
    from cnnjax.data.folder import load_image_folder

    out = {}
    for split in ("train", "test"):
        images, labels, names = load_image_folder(path, split, progress=progress)
        if names != CIFAR10_CLASSES or images.shape[1:] != (32, 32, 3):
            raise ValueError(
                f"read_cifar10: image folder {path!r} has classes {names} and images {images.shape[1:]}; CIFAR-10 "
                f"needs class folders {CIFAR10_CLASSES} of 32x32 RGB images."
            )
        out[split] = (images, labels)
    return out


def read_cifar10(
    path: str | os.PathLike, *, limit_per_class: int | None = None, progress: bool = True
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read CIFAR-10 from any source listed in the module docstring into {"train": (x, y), "test": (x, y)}."""
    path = os.fspath(path)
    if os.path.isdir(os.path.join(path, "train")) and os.path.isdir(os.path.join(path, "test")):
        return _read_folder_tree(path, progress=progress)
    if os.path.isdir(path):
        kind = "binary" if os.path.exists(os.path.join(path, "test_batch.bin")) else "python"
        if not os.path.exists(os.path.join(path, "test_batch" + (".bin" if kind == "binary" else ""))):
            raise ValueError(
                f"read_cifar10: folder {path!r} holds neither 'test_batch' (cifar-10-batches-py) nor "
                f"'test_batch.bin' (cifar-10-batches-bin)."
            )

        def read(base):
            with open(os.path.join(path, base), "rb") as f:
                return f.read()

        return _read_batches(read, kind, path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"read_cifar10: {path!r} does not exist.")
    return _read_tar(path, limit_per_class=limit_per_class, progress=progress)
