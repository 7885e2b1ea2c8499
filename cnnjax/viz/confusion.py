"""Confusion matrix: how often true class ``i`` was predicted as class ``j``."""
from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np
from matplotlib.figure import Figure

from cnnjax.viz._figure import save

__all__ = ["confusion_matrix", "plot_confusion_matrix"]


def confusion_matrix(labels, predicted, num_classes: Optional[int] = None) -> np.ndarray:
    """``M[i, j]`` = number of examples with true class ``i`` predicted as ``j``; shape ``(K, K)`` int64 with
    ``K = num_classes`` (default ``max(labels, predicted) + 1``). Rows sum to the class counts, the trace is
    the number of correct predictions."""
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    if labels.ndim != 1 or labels.shape != predicted.shape:
        raise ValueError(f"confusion_matrix: labels and predicted must be 1-D of one length, got shapes "
                         f"{labels.shape} and {predicted.shape}.")
    if not (np.issubdtype(labels.dtype, np.integer) and np.issubdtype(predicted.dtype, np.integer)):
        raise TypeError(f"confusion_matrix: labels and predicted must be integer class ids, got dtypes "
                        f"{labels.dtype} and {predicted.dtype}.")
    top = int(max(labels.max(initial=-1), predicted.max(initial=-1))) + 1
    k = top if num_classes is None else int(num_classes)
    if min(labels.min(initial=0), predicted.min(initial=0)) < 0 or top > k:
        raise ValueError(f"confusion_matrix: class ids must be in [0, num_classes={k}), got ids from "
                         f"{int(min(labels.min(initial=0), predicted.min(initial=0)))} to {top - 1}.")
    return np.bincount(labels.astype(np.int64) * k + predicted, minlength=k * k).reshape(k, k)


def plot_confusion_matrix(matrix, *, class_names: Optional[Sequence[str]] = None, normalize: bool = False,
                          title: Optional[str] = None, path: Optional[str | os.PathLike] = None,
                          dpi: int = 80) -> Figure:
    """The matrix as a heat map (rows: true class, columns: predicted), with the count (or, with ``normalize``,
    the share of the row) written in each cell when there are at most 20 classes. One panel (and a colour bar).
    """
    m = np.asarray(matrix)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"plot_confusion_matrix: matrix must be square (K, K), got shape {m.shape}.")
    k = m.shape[0]
    if class_names is not None and len(class_names) != k:
        raise ValueError(f"plot_confusion_matrix: {len(class_names)} class_names for a {k}x{k} matrix.")
    shown = m / np.maximum(m.sum(axis=1, keepdims=True), 1) if normalize else m
    size = min(3 + 0.45 * k, 10)
    fig = Figure(figsize=(size + 1, size), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(shown, cmap="Blues", interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8)
    names = [str(c) for c in class_names] if class_names is not None else [str(i) for i in range(k)]
    slanted = max(map(len, names)) > 2
    ax.set_xticks(range(k), names, rotation=45 if slanted else 0, ha="right" if slanted else "center", fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 20:
        limit = shown.max() / 2 if shown.size else 0
        for i in range(k):
            for j in range(k):
                text = f"{shown[i, j]:.2f}" if normalize else f"{int(m[i, j])}"
                ax.text(j, i, text, ha="center", va="center", fontsize=7,
                        color="white" if shown[i, j] > limit else "black")
    accuracy = np.trace(m) / max(m.sum(), 1)
    ax.set_title(title or f"confusion matrix (accuracy {accuracy:.4f}, {int(m.sum())} examples)", fontsize=10)
    return save(fig, path, dpi=dpi)
