"""Preparing a named dataset from its distribution files with cnnjax's own readers (no TensorFlow): every split
decoded once, in the files' order, into the array cache (`cnnjax.data.cache`), announced by one line
("preparing MNIST from DIR once").

MNIST / Fashion-MNIST: the IDX files (`read_idx_pair`): record i of the files is row i. CIFAR-10: the python or
binary batches in batch order (data_batch_1 .. 5, then test_batch; record i of a batch in order), or an
image-folder tree or archive (`read_cifar10`: classes in `CIFAR10_CLASSES` order, files sorted by name within a
class for a tree, archive order for an archive). These are the arrays tfds' builders produce from the same files,
before tfds' shuffled storage (see `cnnjax.data.tfds_prepared`).
"""
from __future__ import annotations

import contextlib
import os
import warnings

from cnnjax.data.cache import cache_file, read_cache, write_cache
from cnnjax.data.cifar import read_cifar10
from cnnjax.data.idx import read_idx_pair
from cnnjax.data.quiet import say
from cnnjax.data.sources import CLASS_NAMES, DISPLAY_NAMES, SPLITS, check_name, find_sources


@contextlib.contextmanager
def exclusive_lock(lock_path: str):
    """An exclusive advisory file lock (fcntl.flock) held for the block; a no-op where fcntl is missing or the
    lock file cannot be created (a read-only folder)."""
    try:
        import fcntl
        f = open(lock_path, "a")
    except (ImportError, OSError):  # Windows, or read-only
        yield
        return
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read_distribution(name: str, source_dir: str | os.PathLike, *, progress: bool = True):
    """{split: (images uint8 NHWC, labels int32)} for both splits of `name` from the distribution files in
    `source_dir`, in the files' order. DataNotFoundError if they are not there, ValueError if corrupt."""
    check_name(name, where="read_distribution")
    source_dir = os.fspath(source_dir)
    found = find_sources(name, source_dir, where=f"load({name!r})")
    if name == "cifar10":
        return read_cifar10(found, progress=progress)
    return {split: read_idx_pair(found[f"{split}_images"], found[f"{split}_labels"],
                                 num_classes=len(CLASS_NAMES[name])) for split in SPLITS}


def _source_label(name: str, source_dir: str) -> str:
    found = find_sources(name, source_dir, where=f"load({name!r})")
    return found if isinstance(found, str) else os.path.dirname(found["train_images"])


def prepare_from_files(name: str, source_dir: str | os.PathLike, prepared_dir: str | os.PathLike, *,
                       progress: bool = True) -> dict:
    """Decode both splits of `name` from `source_dir` and write them to the array cache under `prepared_dir`
    (unless another process did so meanwhile); return {split: (images, labels, class_names)} in file order.

    Prints "preparing <NAME> from <folder> once (into <cache folder>)". A cache that cannot be written (read-only
    `prepared_dir`) is warned about; the arrays are returned all the same.
    """
    check_name(name, where="prepare_from_files")
    source_dir, prepared_dir = os.fspath(source_dir), os.fspath(prepared_dir)
    label = _source_label(name, source_dir)   # DataNotFoundError before any folder is made
    paths = {split: cache_file(name, split, prepared_dir) for split in SPLITS}
    with contextlib.suppress(OSError):
        os.makedirs(os.path.dirname(paths["train"]), exist_ok=True)
    with exclusive_lock(os.path.join(os.path.dirname(paths["train"]), ".prepare.lock")):
        done = {split: read_cache(path, stacklevel=5) for split, path in paths.items()}  # a concurrent job's
        if all(v is not None for v in done.values()):
            return done
        say(f"preparing {DISPLAY_NAMES[name]} from {label} once (into {os.path.dirname(paths['train'])})")
        splits = read_distribution(name, source_dir, progress=progress)
        out = {}
        for split, (images, labels) in splits.items():
            out[split] = (images, labels, CLASS_NAMES[name])
            try:
                write_cache(paths[split], *out[split])
            except OSError as err:  # a read-only prepared_dir still loads, only more slowly next time
                warnings.warn(f"load: could not write the array cache {paths[split]!r} ({err}); later loads "
                              f"decode again.", stacklevel=4)
    return out


__all__ = ["exclusive_lock", "prepare_from_files", "read_distribution"]
