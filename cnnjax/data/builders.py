"""tfds builders that prepare MNIST, Fashion-MNIST and CIFAR-10 from local distribution files (no network).
Needs TensorFlow (`cnnjax[tf]`); `cnnjax.data.load` itself reads the same files without it.

Each builder subclasses tfds' own builder (same name, version, features and split names) and replaces only the
download step: `_split_generators` reads the files in `DownloadConfig(manual_dir=SOURCE)` instead of fetching
URLs. The prepared dataset is written where tfds would write it, `DATA_DIR/<name>/<version>/`, so afterwards

    tfds.load("mnist", data_dir=DATA_DIR, download=False)
    tfds.builder_from_directory(f"{DATA_DIR}/mnist/3.0.1")

read it like a downloaded one, but in the distribution files' order (written with `disable_shuffling`, recorded
in its dataset_info.json; tfds' own download stores a hashed order, see `cnnjax.data.tfds_prepared`). tfds'
"Downloading and preparing dataset" lines and progress bars are replaced by one line of cnnjax's. (tfds' own
`manual_dir` route for MNIST checks the files' sha256 against the downloaded originals and so rejects re-gzipped
copies; these builders check the IDX headers and lengths instead.)
"""
from __future__ import annotations

import os

import numpy as np

from cnnjax.data.quiet import import_tfds

tfds = import_tfds()
from tensorflow_datasets.image_classification import cifar as _tfds_cifar  # noqa: E402 - after the quiet import
from tensorflow_datasets.image_classification import mnist as _tfds_mnist  # noqa: E402

from cnnjax.data.cifar import CIFAR10_CLASSES, read_cifar10  # noqa: E402
from cnnjax.data.idx import read_idx_pair  # noqa: E402
from cnnjax.data.prepare import exclusive_lock  # noqa: E402
from cnnjax.data.quiet import say  # noqa: E402
from cnnjax.data.sources import DISPLAY_NAMES, check_name, find_sources, where_to_put  # noqa: E402
from cnnjax.data.tfds_prepared import is_prepared, prepared_path  # noqa: E402

_INSTRUCTIONS = "Pass the folder with the distribution files as manual_dir; it must hold {}."


def _examples(images: np.ndarray, labels: np.ndarray, ids: list[str] | None = None):
    """(key, example) pairs in file order; the key is the index, as in tfds' own builders."""
    for i in range(len(labels)):
        example = {"image": images[i], "label": int(labels[i])}
        if ids is not None:
            example["id"] = ids[i]
        yield i, example


class _FileOrderQuiet:
    """Written in the distribution files' order; tfds' own announcement lines left out."""

    def _info(self):
        info = super()._info()
        info.as_proto.disable_shuffling = True
        return info

    def _log_download_bytes(self):
        pass

    def _log_download_done(self):
        pass


class _LocalIdxMixin(_FileOrderQuiet):
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


class LocalCifar10(_FileOrderQuiet, _tfds_cifar.Cifar10, skip_registration=True):
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


def import_dataset(name: str, source_dir: str | os.PathLike, *, data_dir: str | os.PathLike) -> str:
    """Prepare tfds dataset `name` under `data_dir` from the distribution files in `source_dir`; no network.

    Does nothing if it is already prepared there. Returns the prepared folder `DATA_DIR/<name>/<version>`.
    Raises ValueError for an unknown name or corrupt files, DataNotFoundError if the files are not there.
    """
    check_name(name, where="import_dataset")
    source_dir, data_dir = os.fspath(source_dir), os.fspath(data_dir)
    find_sources(name, source_dir, where=f"import_dataset({name!r})")  # fail before tfds makes folders
    os.makedirs(data_dir, exist_ok=True)
    with exclusive_lock(os.path.join(data_dir, f".{name}.import.lock")):  # concurrent jobs: one imports, others wait
        if not is_prepared(name, data_dir):
            say(f"preparing the tensorflow-datasets copy of {DISPLAY_NAMES[name]} from {source_dir} once (into "
                f"{prepared_path(name, data_dir)})")
            builder = LOCAL_BUILDERS[name](data_dir=data_dir)
            builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=source_dir))
    return prepared_path(name, data_dir)


__all__ = ["LOCAL_BUILDERS", "LocalCifar10", "LocalFashionMnist", "LocalMnist", "import_dataset", "is_prepared",
           "prepared_path"]
