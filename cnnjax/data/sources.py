"""Finding the standard distribution files of a dataset in a local folder (no network)."""
from __future__ import annotations

import os

KNOWN_DATASETS = ("mnist", "fashion_mnist", "cifar10")
IMAGE_SHAPES = {"mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "cifar10": (32, 32, 3)}   # (H, W, C)
DISPLAY_NAMES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}
SPLITS = ("train", "test")   # every known dataset has these two, as distributed
# The tensorflow-datasets versions of the same datasets (folder names of a prepared copy and of the array cache).
VERSIONS = {"mnist": "3.0.1", "fashion_mnist": "3.0.1", "cifar10": "3.0.2"}
# Class names, label k -> name k (tensorflow-datasets' names for the same datasets).
CLASS_NAMES = {
    "mnist": tuple(str(k) for k in range(10)),
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
}

# For each dataset: sub-folders of a source folder searched before the folder itself.
_SUBFOLDERS = {
    "mnist": ("mnist", "MNIST", "MNIST/raw"),
    "fashion_mnist": ("fashion_mnist", "fashion-mnist", "FashionMNIST", "FashionMNIST/raw"),
    "cifar10": ("cifar10", "cifar-10", "CIFAR10"),
}
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
CIFAR10_SOURCES = (
    "cifar-10-python.tar.gz",
    "cifar-10-binary.tar.gz",
    "cifar10-jpeg.tar.xz",
    "cifar-10-batches-py",
    "cifar-10-batches-bin",
)


class DataNotFoundError(FileNotFoundError):
    """The data a call needs is neither prepared nor present as distribution files, and cannot be downloaded."""


def check_split(name: str, split: str, *, where: str) -> str:
    """Return `split` if dataset `name` has it (see `SPLITS`), else raise ValueError listing its splits."""
    if split not in SPLITS:
        raise ValueError(f"{where}: split {split!r} is not in dataset {name!r}; its splits are {sorted(SPLITS)}.")
    return split


def check_name(name: str, *, where: str) -> str:
    """Return `name` if it is a known dataset, else raise ValueError listing the known ones."""
    if name not in KNOWN_DATASETS:
        raise ValueError(
            f"{where}: unknown dataset name {name!r}; known datasets are {KNOWN_DATASETS}, or pass the path of "
            f"an image folder (one sub-folder per class)."
        )
    return name


def _candidates(name: str, source_dir: str) -> list[str]:
    return [os.path.join(source_dir, sub) for sub in _SUBFOLDERS[name]] + [source_dir]


def where_to_put(name: str) -> str:
    """A sentence saying which files a source folder must hold for `name`."""
    if name == "cifar10":
        return (f"one of {CIFAR10_SOURCES} in DIR or DIR/cifar10/, or an unpacked image-folder tree "
                f"DIR/cifar10/{{train,test}}/<class>/<image>")
    files = ", ".join(f + ".gz" for f in IDX_FILES.values())
    return f"the four IDX files {files} (gzipped or not) in DIR/{name}/ or DIR"


def find_idx_files(name: str, source_dir: str) -> dict[str, str] | None:
    """The four IDX files of mnist/fashion_mnist under `source_dir` (see `_SUBFOLDERS`), or None if absent."""
    for folder in _candidates(name, source_dir):
        found = {}
        for key, base in IDX_FILES.items():
            for candidate in (base + ".gz", base, base.replace("-idx", ".idx") + ".gz", base.replace("-idx", ".idx")):
                if os.path.isfile(os.path.join(folder, candidate)):
                    found[key] = os.path.join(folder, candidate)
                    break
        if len(found) == len(IDX_FILES):
            return found
    return None


def find_cifar10_source(source_dir: str) -> str | None:
    """The first CIFAR-10 source (tarball or unpacked batches folder) under `source_dir`, or None."""
    for folder in _candidates("cifar10", source_dir):
        for base in CIFAR10_SOURCES:
            if os.path.exists(os.path.join(folder, base)):
                return os.path.join(folder, base)
    for folder in _candidates("cifar10", source_dir) + [os.path.join(source_dir, "cifar10-jpeg")]:
        if folder != source_dir and all(os.path.isdir(os.path.join(folder, s)) for s in ("train", "test")):
            return folder  # an unpacked image-folder tree
    return None


def find_sources(name: str, source_dir: str, *, where: str):
    """Sources of `name` in `source_dir`; DataNotFoundError saying what to put where if they are not there."""
    check_name(name, where=where)
    found = find_idx_files(name, source_dir) if name != "cifar10" else find_cifar10_source(source_dir)
    if found is None:
        raise DataNotFoundError(
            f"{where}: no {name} distribution files in {source_dir!r}; put {where_to_put(name)} "
            f"(DIR = {source_dir!r}, or point data_dir / --data-dir at the folder that holds them)."
        )
    return found
