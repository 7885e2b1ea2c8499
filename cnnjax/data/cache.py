"""The array cache: one split of a named dataset as `PREPARED_DIR/_cnnjax_arrays/<name>/<version>/<split>.npz`
(images uint8 NHWC, labels int32, class names as JSON, and `order`).

`order` is "files" for arrays in the distribution files' order (record i of the files is row i). A cache written
before cnnjax kept that order has no `order` entry and holds tfds' hashed order (it was decoded from a shuffled
tfds copy): `read_cache` puts such rows back in file order (`tfds_prepared.to_file_order`) and rewrites the file.
A cache that cannot be read or checked (truncated, corrupt, wrong shapes) is named in a warning and deleted, so
that the caller builds it again instead of failing on every later load.
"""
from __future__ import annotations

import json
import os
import warnings

import numpy as np

from cnnjax.data.sources import VERSIONS
from cnnjax.data.tfds_prepared import to_file_order

FILE_ORDER = "files"


def cache_file(name: str, split: str, prepared_dir: str | os.PathLike) -> str:
    """`PREPARED_DIR/_cnnjax_arrays/<name>/<version>/<split>.npz`."""
    return os.path.join(os.fspath(prepared_dir), "_cnnjax_arrays", name, VERSIONS[name], f"{split}.npz")


def read_cache(path: str, *, stacklevel: int = 4):
    """The cached (images, labels, class_names) in file order, or None when there is no cache or it cannot be
    read (then named in a warning and deleted, see the module docstring)."""
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path) as f:
            images, labels = f["images"], f["labels"]
            class_names = tuple(json.loads(str(f["class_names"])))
            order = str(f["order"]) if "order" in f.files else None
        if (images.dtype != np.uint8 or images.ndim != 4 or labels.ndim != 1 or len(labels) != len(images)
                or not class_names or not all(isinstance(c, str) for c in class_names)
                or (labels.size and not 0 <= int(labels.min()) <= int(labels.max()) < len(class_names))):
            raise ValueError(f"it holds images {images.dtype}{images.shape}, labels {labels.dtype}{labels.shape} "
                             f"and {len(class_names)} class names, not a valid split")
        if order not in (None, FILE_ORDER):
            raise ValueError(f"its order is {order!r}, not {FILE_ORDER!r}")
    except Exception as err:  # noqa: BLE001 - zipfile, numpy and json raise many types for a damaged file
        warnings.warn(f"load: the array cache {path!r} cannot be read ({type(err).__name__}: {err}); deleting it "
                      f"and building it again.", stacklevel=stacklevel)
        try:
            os.remove(path)
        except OSError as remove_err:   # read-only: still rebuilt in memory, the write is then warned about
            warnings.warn(f"load: could not delete the unreadable cache {path!r} ({remove_err}).",
                          stacklevel=stacklevel)
        return None
    if order is None:  # an earlier cnnjax's cache, in tfds' hashed order (split = the file's name)
        images, labels = to_file_order(images, labels, os.path.basename(path)[: -len(".npz")])
        try:
            write_cache(path, images, labels, class_names)
        except OSError:  # read-only: reordered in memory on every load
            pass
    return images, labels, class_names


def write_cache(path: str, images, labels, class_names) -> None:
    """Write one split's arrays (in file order) atomically to `path` (a temporary file, then a rename)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp.npz"
    np.savez(tmp, images=images, labels=labels, class_names=np.asarray(json.dumps(list(class_names))),
             order=np.asarray(FILE_ORDER))
    os.replace(tmp, path)


__all__ = ["FILE_ORDER", "cache_file", "read_cache", "write_cache"]
