"""Figure plumbing shared by the plots: a panel grid on a pyplot-free ``Figure``, saving, image arguments.

Figures are built with ``matplotlib.figure.Figure`` directly, not ``pyplot``: nothing global is created, so
figures are garbage-collected like any object and no display backend is needed (PNG files go through Agg).
"""
from __future__ import annotations

import math
import os
from typing import Optional, Sequence, Tuple

import numpy as np
from matplotlib.figure import Figure

__all__ = ["panel_grid", "save", "as_image"]


def panel_grid(n: int, *, ncols: int, panel_size: float = 1.4, title: Optional[str] = None,
               extra_height: float = 0.0) -> Tuple[Figure, list]:
    """A figure with ``n`` image panels on ``ceil(n / ncols)`` rows; unused cells are removed.

    Returns ``(figure, axes)`` with ``len(axes) == n``; each panel has its ticks hidden.
    """
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(panel_size * ncols, panel_size * nrows + 0.3 + extra_height), layout="constrained")
    grid = fig.add_gridspec(nrows, ncols)
    axes = []
    for i in range(n):
        ax = fig.add_subplot(grid[i // ncols, i % ncols])
        ax.set_xticks([])
        ax.set_yticks([])
        axes.append(ax)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig, axes


def as_image(image, *, fn: str, arg: str = "image") -> np.ndarray:
    """An image as a NumPy array ready for ``imshow``: (H, W) grey or (H, W, 3) RGB.

    Accepts (H, W), (H, W, 1), (H, W, 3) or a batch of one ((1, H, W, C)); uint8 is scaled by 1/255.
    """
    a = np.asarray(image)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3)):
        raise ValueError(f"{fn}: {arg} must be (H, W), (H, W, 1) or (H, W, 3) (NHWC channels last), "
                         f"got shape {np.shape(image)}.")
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    a = a.astype(np.float32)
    return np.clip(a, 0.0, 1.0) if a.ndim == 3 else a


def save(fig: Figure, path: Optional[str | os.PathLike], *, dpi: int = 80) -> Figure:
    """Writes ``fig`` as a PNG to ``path`` (folders created) when ``path`` is given; returns ``fig``."""
    if path is not None:
        path = os.fspath(path)
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        fig.savefig(path, dpi=dpi, format="png")
    return fig


def show_grey(ax, array: np.ndarray, *, cmap: str = "gray", vmin=None, vmax=None) -> None:
    """One grey image, scaled to its own min..max unless ``vmin``/``vmax`` are given."""
    ax.imshow(np.asarray(array, np.float32), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")


def names_or_indices(names: Optional[Sequence[str]], k: int) -> str:
    return str(names[k]) if names is not None and 0 <= k < len(names) else str(k)
