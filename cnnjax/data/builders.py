"""tfds builders that prepare MNIST, Fashion-MNIST and CIFAR-10 from local distribution files (no network).

Each builder subclasses tfds' own builder (same name, version, features and split names) and replaces only the
download step: `_split_generators` reads the files in `DownloadConfig(manual_dir=SOURCE)` instead of fetching
URLs. The prepared dataset is written where tfds would write it, `DATA_DIR/<name>/<version>/`, so afterwards

    tfds.load("mnist", data_dir=DATA_DIR, download=False)
    tfds.builder_from_directory(f"{DATA_DIR}/mnist/3.0.1")

read it like a downloaded one. (tfds' own `manual_dir` route for MNIST checks the files' sha256 against the
downloaded originals and so rejects re-gzipped copies; these builders check the IDX headers and lengths instead.)
"""
from __future__ import annotations

import contextlib
import os

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.image_classification import cifar as _tfds_cifar
from tensorflow_datasets.image_classification import mnist as _tfds_mnist

from cnnjax.data.cifar import CIFAR10_CLASSES, read_cifar10
from cnnjax.data.idx import read_idx_pair
from cnnjax.data.sources import check_name, find_sources, where_to_put

_INSTRUCTIONS = "Pass the folder with the distribution files as manual_dir; it must hold {}."


def _examples(images: np.ndarray, labels: np.ndarray, ids: list[str] | None = None):
    """(key, example) pairs in file order; the key is the index, as in tfds' own builders."""
    for i in range(len(labels)):
        example = {"image": images[i], "label": int(labels[i])}
        if ids is not None:
            example["id"] = ids[i]
        yield i, example


class _LocalIdxMixin:
    def _split_generators(self, dl_manager):
        files = find_sources(self.name, os.fspath(dl_manager.manual_dir), where=f"import_dataset({self.name!r})")
        return {
            split: _examples(*read_idx_pair(files[f"{split}_images"], files[f"{split}_labels"],
                                            num_classes=self.info.features["label"].num_classes))
            for split in ("train", "test")
        }


class LocalMnist(_LocalIdxMixin, _tfds_mnist.MNIST, skip_registration=True):
    """tfds "mnist" 3.0.1 prepared from the four local IDX files."""

    name = "mnist"
    MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS.format(where_to_put("mnist"))


class LocalFashionMnist(_LocalIdxMixin, _tfds_mnist.FashionMNIST, skip_registration=True):
    """tfds "fashion_mnist" 3.0.1 prepared from the four local IDX files."""

    name = "fashion_mnist"
    MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS.format(where_to_put("fashion_mnist"))


class LocalCifar10(_tfds_cifar.Cifar10, skip_registration=True):
    """tfds "cifar10" 3.0.2 prepared from a local python/binary tarball or image-folder archive."""

    name = "cifar10"
    MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS.format(where_to_put("cifar10"))

    def _split_generators(self, dl_manager):
        source = find_sources("cifar10", os.fspath(dl_manager.manual_dir), where="import_dataset('cifar10')")
        self.info.features["label"].names = list(CIFAR10_CLASSES)
        splits = read_cifar10(source)
        return {
            split: _examples(x, y, [f"{split}_{i:05d}" for i in range(len(y))]) for split, (x, y) in splits.items()
        }


LOCAL_BUILDERS = {"mnist": LocalMnist, "fashion_mnist": LocalFashionMnist, "cifar10": LocalCifar10}


def prepared_path(name: str, data_dir: str) -> str:
    """`DATA_DIR/<name>/<version>`, the folder tfds reads a prepared dataset from."""
    builder = LOCAL_BUILDERS[check_name(name, where="prepared_path")]
    return os.path.join(os.fspath(data_dir), builder.name, str(builder.VERSION))


def is_prepared(name: str, data_dir: str) -> bool:
    """Whether `DATA_DIR/<name>/<version>/dataset_info.json` exists (how tfds itself decides)."""
    return os.path.isfile(os.path.join(prepared_path(name, data_dir), "dataset_info.json"))


def import_dataset(name: str, source_dir: str | os.PathLike, *, data_dir: str | os.PathLike) -> str:
    """Prepare tfds dataset `name` under `data_dir` from the distribution files in `source_dir`; no network.

    Does nothing if it is already prepared there. Returns the prepared folder `DATA_DIR/<name>/<version>`.
    Raises ValueError for an unknown name or corrupt files, DataNotFoundError if the files are not there.
    """
    check_name(name, where="import_dataset")
    source_dir, data_dir = os.fspath(source_dir), os.fspath(data_dir)
    find_sources(name, source_dir, where=f"import_dataset({name!r})")  # fail before tfds makes folders
    os.makedirs(data_dir, exist_ok=True)
    with _exclusive(os.path.join(data_dir, f".{name}.import.lock")):  # concurrent jobs: one imports, others wait
        if not is_prepared(name, data_dir):
            builder = LOCAL_BUILDERS[name](data_dir=data_dir)
            builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=source_dir))
    return prepared_path(name, data_dir)


@contextlib.contextmanager
def _exclusive(lock_path: str):
    """An exclusive advisory file lock (fcntl.flock) held for the block; a no-op where fcntl is missing."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    with open(lock_path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
