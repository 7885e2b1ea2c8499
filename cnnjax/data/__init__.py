"""Datasets for cnnjax: MNIST, Fashion-MNIST, CIFAR-10 and image folders, read by cnnjax's own readers from
local distribution files (no TensorFlow; in the files' order), from a tensorflow-datasets copy (with TensorFlow,
`cnnjax[tf]`) or a download, plus the on-device batching/augmentation path (`cnnjax.data.device`). Placing
batches on a device mesh is `cnnjax.train.placement`'s."""
from cnnjax.data import device
from cnnjax.data.cifar import CIFAR10_CLASSES, read_cifar10
from cnnjax.data.folder import load_image_folder
from cnnjax.data.idx import read_idx, read_idx_pair
from cnnjax.data.loading import Split, default_data_dir, load
from cnnjax.data.sources import KNOWN_DATASETS, DataNotFoundError
from cnnjax.data.tfds_prepared import is_prepared, prepared_path

_LAZY = {"import_dataset"}  # needs TensorFlow and tensorflow_datasets (slow to import)


def __getattr__(name):
    if name in _LAZY:
        from cnnjax.data import builders

        return getattr(builders, name)
    raise AttributeError(f"module 'cnnjax.data' has no attribute {name!r}")


__all__ = [
    "CIFAR10_CLASSES",
    "DataNotFoundError",
    "KNOWN_DATASETS",
    "Split",
    "default_data_dir",
    "device",
    "import_dataset",
    "is_prepared",
    "load",
    "load_image_folder",
    "prepared_path",
    "read_cifar10",
    "read_idx",
    "read_idx_pair",
]
