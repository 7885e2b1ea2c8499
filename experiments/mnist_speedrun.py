"""MNIST speedrun: the recipe ``cnnjax.train.recipes.mnist_speedrun`` trained by ``fit``, several seeds.

Target (issue 7): on one GPU, 99.0% test accuracy (mean of >= 3 seeds) in <= 0.25 s of training, about half the
best anchor (Flax's CNN without BatchNorm/dropout, one ``lax.scan`` per epoch: 0.47 s on an H100); issue 28: 99.0%
with ``fit``, a zoo model (``speedrun_mnist``) and augmentation, its epochs and CPU time. The recipe: the CIFAR
speedrun network at widths (32, 64, 64) on 28x28x1 images (8 whitening filters), no flips and no test-time
augmentation (digits are not mirror-symmetric), a random translation of up to 2 pixels, batch 512, 1 epoch,
PyTorch's uniform conv init (no identity init). Timing as in cifar_speedrun.py (``train s``: wall seconds of
``fit``, its compilation in the first epoch included; ``epoch s`` would be the later epochs').

    python experiments/mnist_speedrun.py --quick                                    # synthetic data, seconds
    python experiments/mnist_speedrun.py --seeds 0 1 2 --loop step                  # CPU, real data (minutes)
    python experiments/mnist_speedrun.py --data-dir .data --seeds 0 1 2 3 4 --warmup 1     # GPU

Reads the MNIST IDX files (``mnist/*-ubyte.gz`` under ``--data-dir``) with numpy only: no TensorFlow needed.
Prints the per-seed table and writes it with the machine, versions and settings as JSON to ``--out``.
"""
from __future__ import annotations

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cifar_speedrun  # noqa: E402  (the shared options, run loop and table)

TARGET = 0.99


def load_mnist(data_dir: str, train_limit=None):
    """(x_train, y_train, x_test, y_test): uint8 (n, 28, 28, 1) images and int32 labels from the IDX files."""
    from cnnjax.data import read_idx_pair
    from cnnjax.data.sources import find_idx_files

    files = find_idx_files("mnist", data_dir)
    if files is None:
        raise SystemExit(f"mnist_speedrun: no MNIST IDX files under --data-dir {data_dir!r}. Point --data-dir at "
                         f"the folder holding mnist/ (../shared/data here; on the GPU machine copy it into an "
                         f"ignored folder of the checkout, e.g. .data/, and carry it).")
    out = []
    for split in ("train", "test"):
        images, labels = read_idx_pair(files[f"{split}_images"], files[f"{split}_labels"])
        if split == "train" and train_limit is not None:
            images, labels = images[:train_limit], labels[:train_limit]
        out += [np.ascontiguousarray(images.reshape(-1, 28, 28, 1), np.uint8), labels.astype(np.int32)]
    return tuple(out)


def synthetic(n_train=1024, n_test=256, seed=0):
    """Ten classes, each a bright square at its own place on noise (one --quick epoch is too short to learn
    them: the numbers mean nothing)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n_train + n_test).astype(np.int32)
    x = rng.integers(0, 60, (n_train + n_test, 28, 28, 1))
    for i, label in enumerate(y):
        r, c = 2 + 8 * (label // 4), 2 + 6 * (label % 4)
        x[i, r:r + 6, c:c + 6] += 180
    x = x.astype(np.uint8)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def parse_args(argv=None):
    from cnnjax.train.recipes import MNIST

    return cifar_speedrun.parser(__doc__, "mnist/*-ubyte.gz", cache=False, preset=MNIST).parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    return cifar_speedrun.load_and_run(args, lambda: load_mnist(args.data_dir, args.train_limit), synthetic,
                                       dataset="MNIST", script=__file__, argv=argv, recipe="mnist_speedrun",
                                       target=TARGET)


if __name__ == "__main__":
    main()
