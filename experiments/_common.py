"""Shared plumbing of the lecture experiment scripts (conv_basics, lecture_models, dnn_vs_cnn, image_folder):
options, data (full sets through `cnnjax.data.load`, `--quick` subsets straight from the files), timing and the
results table; also the decoded-array cache of the speed scripts (`cached_arrays`). Not a script; the scripts import
it from their own folder."""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

SHARED_DATA = Path(os.environ.get("CNNJAX_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def parser(description: str, default_out: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=default_out, help=f"folder for results.json, results.md and PNGs "
                   f"(default {default_out})")
    p.add_argument("--data-dir", default=str(SHARED_DATA), help="folder with the dataset files (mnist/*.gz, "
                   "cifar10-jpeg.tar.xz); default ../shared/data or $CNNJAX_SHARED_DATA")
    p.add_argument("--quick", action="store_true", help="tiny subsets and 1 epoch: checks the script end to end "
                   "in seconds (the numbers mean nothing)")
    p.add_argument("--seed", type=int, default=0, help="init / data-order seed")
    return p


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine() -> str:
    import jax

    return f"{cpu_name()}, {os.cpu_count()} cores, jax {jax.__version__} {jax.default_backend()}"


def mnist(split: str, data_dir: str, *, quick: bool, limit: int | None = None):
    """MNIST `split` as a `cnnjax.data.Split` (float32 in [0, 1], NHWC). `quick`: read the IDX files directly
    (no tfds preparation, well under a second) and keep the first `limit` images."""
    from cnnjax.data import Split, load, read_idx_pair
    from cnnjax.data.sources import find_idx_files

    if quick:
        files = find_idx_files("mnist", data_dir)
        if files is None:
            raise SystemExit(f"no MNIST IDX files under {data_dir!r}; pass --data-dir (see ../shared/data)")
        prefix = "train" if split == "train" else "test"
        images, labels = read_idx_pair(files[f"{prefix}_images"], files[f"{prefix}_labels"])
        n = limit or len(images)
        images = images[:n].reshape(n, 28, 28, 1)
        return Split(images.astype(np.float32) / 255, labels[:n].astype(np.int32),
                     tuple(str(i) for i in range(10)))
    s = load("mnist", split, data_dir=data_dir, progress=False)
    return s if limit is None else type(s)(s.images[:limit], s.labels[:limit], s.class_names)


_CIFAR: dict = {}


def cifar10(split: str, data_dir: str, *, quick: bool, per_class: int = 20):
    """CIFAR-10 `split`, read straight from the archive with `cnnjax.data.read_cifar10` (one pass decodes both
    splits, kept for the next call; no tfds preparation); `quick`: the first `per_class` images of each class."""
    from cnnjax.data import CIFAR10_CLASSES, Split, read_cifar10
    from cnnjax.data.sources import find_cifar10_source

    source = find_cifar10_source(data_dir)
    if source is None:
        raise SystemExit(f"no CIFAR-10 archive under {data_dir!r}; pass --data-dir")
    key = (source, per_class if quick else None)
    if key not in _CIFAR:
        _CIFAR[key] = read_cifar10(source, limit_per_class=key[1], progress=False)
    images, labels = _CIFAR[key][split]
    return Split(images.astype(np.float32) / 255, labels.astype(np.int32), tuple(CIFAR10_CLASSES))


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def write_results(out: str, rows: list[dict], *, columns: list[str]) -> str:
    """rows -> OUT/results.json and OUT/results.md (a Markdown table of `columns`); returns the table."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(rows, f, indent=1, default=float)
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else (f"{v:,}" if isinstance(v, int) else str(v))  # noqa
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    table = "\n".join(lines)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(table + "\n")
    return table


def write_whole(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` through a temporary file that is then renamed, so that a run killed while
    writing (a time limit) leaves the previous version, never a torn one."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    partial = f"{path}.{os.getpid()}.tmp"
    with open(partial, "w") as f:
        f.write(text)
    os.replace(partial, path)


def cached_arrays(path: str, make, names=("x_train", "y_train", "x_test", "y_test")) -> tuple:
    """``make()``'s arrays, kept in the ``.npz`` file ``path``: read from it when it exists, else made and written
    whole (a temporary file, then renamed), so that a killed run never leaves a torn cache behind."""
    if os.path.exists(path):
        with np.load(path) as f:
            return tuple(f[name] for name in names)
    arrays = tuple(make())
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    partial = f"{path}.{os.getpid()}.tmp.npz"
    np.savez(partial, **dict(zip(names, arrays)))
    os.replace(partial, path)
    return arrays
