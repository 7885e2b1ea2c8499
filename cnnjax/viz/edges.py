"""The notes' edge masks and line filters, applied to an image with :func:`cnnjax.functional.conv2d`.

Masks are 2-D ``(kh, kw)`` arrays; applying mask ``m`` is a ``"same"``, stride-1 convolution (cross-correlation,
as in ``tf.nn.conv2d``): ``out[i, j] = sum_{a,b} x[i + a - pt, j + b - pl] * m[a, b]`` with TensorFlow's "same"
padding ``pt = (kh - 1) // 2``, ``pl = (kw - 1) // 2`` (the odd cell goes bottom/right).
"""
from __future__ import annotations

import os
from typing import Dict, Mapping, Optional

import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from cnnjax import functional as F
from cnnjax.viz._figure import as_image, panel_grid, save, show_grey

__all__ = ["edge_masks", "line_filters", "apply_masks", "plot_edge_masks"]


def edge_masks() -> Dict[str, np.ndarray]:
    """The notes' 3x3 edge masks: vertical ``[[0,0,0],[-1,1,0],[0,0,0]]`` (a left-to-right difference, bright
    on vertical edges) and horizontal ``[[0,-1,0],[0,1,0],[0,0,0]]`` (a top-to-bottom difference)."""
    return {"vertical edges": np.array([[0, 0, 0], [-1, 1, 0], [0, 0, 0]], np.float32),
            "horizontal edges": np.array([[0, -1, 0], [0, 1, 0], [0, 0, 0]], np.float32)}


def line_filters(size: int = 7) -> Dict[str, np.ndarray]:
    """The notes' line filters: ``size x size`` zeros with the middle column (vertical line) or the middle row
    (horizontal line) set to one (for 7x7: column 3 / row 3)."""
    v = np.zeros((size, size), np.float32)
    v[:, size // 2] = 1
    return {"vertical line": v, "horizontal line": v.T.copy()}


def apply_masks(image, masks: Mapping[str, np.ndarray]) -> np.ndarray:
    """Each mask applied to a grey image: ``(H, W, len(masks))``, ``"same"`` padding, stride 1.

    image: ``(H, W)``, ``(H, W, 1)`` or ``(1, H, W, 1)``; the masks become the filters of one
    ``(kh, kw, 1, n)`` kernel, so all masks must share one size.
    """
    x = np.asarray(image, np.float32)
    x = x.reshape(x.shape[-3:-1] if x.ndim >= 3 and x.shape[-1] == 1 else x.shape)
    if x.ndim != 2:
        raise ValueError(f"apply_masks: image must be one grey image (H, W), (H, W, 1) or (1, H, W, 1), got shape "
                         f"{np.shape(image)}.")
    ms = [np.asarray(m, np.float32) for m in masks.values()]
    if not ms or any(m.ndim != 2 or m.shape != ms[0].shape for m in ms):
        raise ValueError(f"apply_masks: masks must be a non-empty mapping of 2-D arrays of one size, got shapes "
                         f"{[np.shape(m) for m in masks.values()]}.")
    kernel = jnp.asarray(np.stack(ms, axis=-1)[:, :, None, :])
    return np.asarray(F.conv2d(jnp.asarray(x)[None, :, :, None], kernel, padding="same")[0])


def plot_edge_masks(image, masks: Optional[Mapping[str, np.ndarray]] = None, *, title: Optional[str] = None,
                    panel_size: float = 1.6, path: Optional[str | os.PathLike] = None, dpi: int = 80) -> Figure:
    """The image, each mask, and each mask's output as a grey picture, as the notes show them.

    Top row: the input, then the masks; bottom row: under each mask, the feature map it makes (:func:`apply_masks`).
    ``masks`` defaults to :func:`edge_masks`. Panels: ``1 + 2 * len(masks)``.
    """
    masks = edge_masks() if masks is None else dict(masks)
    out = apply_masks(image, masks)   # checks image and masks
    n = len(masks)
    fig, axes = panel_grid(2 * (n + 1), ncols=n + 1, panel_size=panel_size, title=title)
    img = as_image(image, fn="plot_edge_masks")
    axes[0].imshow(img, cmap="gray", interpolation="nearest")
    axes[0].set_title("input", fontsize=8)
    fig.delaxes(axes[n + 1])
    for k, (name, m) in enumerate(masks.items()):
        show_grey(axes[1 + k], m, cmap="bwr", vmin=-1, vmax=1)
        axes[1 + k].set_title(f"{name}\n{m.shape[0]}x{m.shape[1]} mask", fontsize=7)
        show_grey(axes[n + 2 + k], out[..., k])
        axes[n + 2 + k].set_title(f"output {out.shape[0]}x{out.shape[1]}", fontsize=7)
    return save(fig, path, dpi=dpi)
