"""Training curves: loss and accuracy per epoch, train and test, from a ``fit`` history or a metrics file.

A history is a dict of per-epoch lists as :func:`cnnjax.train.fit` returns it: ``"epoch"``, ``"loss"``,
``"accuracy"`` and, with validation data, ``"val_loss"`` / ``"val_accuracy"``. ``"train_loss"`` /
``"train_accuracy"`` and ``"test_loss"`` / ``"test_accuracy"`` are read too. A metrics file (``--metrics-out``)
is JSON lines: one object per line; every line that holds at least one of those keys is one epoch.
"""
from __future__ import annotations

import json
import math
import os
from typing import Dict, List, Mapping, Optional, Union

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cnnjax.viz._figure import save

__all__ = ["read_metrics", "plot_curves", "TRAIN_KEYS", "TEST_KEYS"]

TRAIN_KEYS = {"loss": ("loss", "train_loss"), "accuracy": ("accuracy", "train_accuracy", "acc", "train_acc")}
TEST_KEYS = {"loss": ("val_loss", "test_loss"), "accuracy": ("val_accuracy", "test_accuracy", "val_acc",
                                                              "test_acc")}
_ALL = {k for keys in (*TRAIN_KEYS.values(), *TEST_KEYS.values()) for k in keys}


def read_metrics(path: Union[str, os.PathLike]) -> Dict[str, List]:
    """A JSON-lines metrics file as a history: ``{key: [value per epoch line]}``.

    Lines that are empty, or hold none of the metric keys (e.g. a run header), are skipped; a line that is not
    JSON raises ValueError naming the file and line. A key missing from some epoch lines gets NaN there.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"read_metrics: no metrics file at {path!r}; write one with "
                                "`cnnjax train ... --metrics-out FILE`.")
    records = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"read_metrics: {path!r} line {number} is not JSON ({err}): {line[:80]!r}; a metrics "
                                 "file is JSON lines, one object per line (`cnnjax train ... --metrics-out FILE`)."
                                 ) from err
            if isinstance(record, dict) and _ALL & set(record):
                records.append(record)
    keys = [k for k in dict.fromkeys(k for r in records for k in r)
            if all(isinstance(r.get(k, math.nan), (int, float)) for r in records)]
    return {k: [r.get(k, math.nan) for r in records] for k in keys}


def _pick(history: Mapping, names) -> Optional[List[float]]:
    for name in names:
        if name in history and len(history[name]):
            return [float(v) for v in history[name]]
    return None


def plot_curves(history: Union[Mapping[str, List], str, os.PathLike], *, title: Optional[str] = None,
                path: Optional[str | os.PathLike] = None, dpi: int = 80) -> Figure:
    """Two panels, loss (left) and accuracy (right) against epoch, one line for train and one for test.

    (In a ``fit`` history the train values are means over each epoch's steps, while the weights change; the
    test values are measured once at the end of the epoch, so test can lie above train early on.)

    history: a history dict (see the module docstring) or the path of a JSON-lines metrics file. Epochs are
    ``history["epoch"]`` when present, else 1, 2, ... . A panel with no data says so. Panels: 2.
    """
    source = None
    if isinstance(history, (str, os.PathLike)):
        source = os.fspath(history)
        history = read_metrics(source)
    if not isinstance(history, Mapping):
        raise TypeError(f"plot_curves: history must be a dict of per-epoch lists or a metrics file path, got "
                        f"{type(history).__name__}.")
    found = {(split, metric): _pick(history, keys[metric])
             for split, keys in (("train", TRAIN_KEYS), ("test", TEST_KEYS)) for metric in ("loss", "accuracy")}
    if not any(found.values()):
        if source is not None:    # read_metrics keeps only lines with a metric key, so there are no keys to list
            raise ValueError(f"plot_curves: {source!r} has no epoch to plot: none of its lines is a JSON object "
                             f"with any of {sorted(_ALL)} (write one with `cnnjax train ... --metrics-out FILE`).")
        raise ValueError(f"plot_curves: history has no metric to plot; expected some of {sorted(_ALL)}, got keys "
                         f"{sorted(history)}.")
    fig = Figure(figsize=(8, 3.2), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for split, style in (("train", "o-"), ("test", "s--")):
            values = found[(split, metric)]
            if values is None:
                continue
            epochs = history.get("epoch")
            xs = [float(e) for e in epochs] if epochs is not None and len(epochs) == len(values) else \
                list(range(1, len(values) + 1))
            ax.plot(xs, values, style, label=f"{split} (last {values[-1]:.4f})")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, f"no {metric} recorded", ha="center", va="center", transform=ax.transAxes)
    if title:
        fig.suptitle(title, fontsize=10)
    return save(fig, path, dpi=dpi)
