"""Predictions of a classifier and a grid of test images labelled "predicted (true)", mistakes in red."""
from __future__ import annotations

import os
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from cnnjax.layers.sequential import takes_train
from cnnjax.nnx.adapter import as_linen, is_nnx
from cnnjax import _args
from cnnjax.viz._figure import as_image, names_or_indices, panel_grid, save
from cnnjax.viz.maps import as_variables
from cnnjax.functional.images import as_float_images

__all__ = ["predict", "plot_predictions"]


def predict(model, variables, images, *, batch_size: int = 1000) -> np.ndarray:
    """Predicted class ids ``argmax(logits)``, shape ``(N,)`` int32, for ``images`` ``(N, H, W, C)`` (uint8 or
    float in [0, 1]), in inference mode, ``batch_size`` images per jitted call. An NNX ``model`` runs through
    :func:`cnnjax.nnx.as_linen`, with its own variables where ``variables`` is None."""
    if is_nnx(model):
        model, variables = as_linen(model), model if variables is None else variables
    batch_size = _args.check_int(batch_size, "batch_size", "predict")
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"predict: images must be (N, H, W, C) NHWC, got shape {images.shape}.")
    v = as_variables(variables)
    kwargs = {"train": False} if takes_train(model) else {}

    @jax.jit
    def labels_of(x):
        x = as_float_images(x)
        return jnp.argmax(model.apply(v, x, **kwargs), axis=-1).astype(jnp.int32)

    return np.concatenate([np.asarray(labels_of(images[i:i + batch_size]))
                           for i in range(0, len(images), batch_size)]) if len(images) else np.zeros(0, np.int32)


def plot_predictions(images, labels, predicted, *, class_names: Optional[Sequence[str]] = None, n: int = 25,
                     ncols: int = 5, only_mistakes: bool = False, seed: Optional[int] = None, title: Optional[str] = None,
                     panel_size: float = 1.5, path: Optional[str | os.PathLike] = None, dpi: int = 80) -> Figure:
    """The first ``n`` images (or the first ``n`` mistakes; with ``seed``, ``n`` of them drawn at random without
    replacement by ``numpy.random.default_rng(seed)``), each titled ``predicted (true)``; a mistake has a
    red title and a red frame and its true label in brackets, a correct one a black title.

    images ``(N, H, W, C)`` NHWC; labels and predicted ``(N,)`` class ids. Panels: ``min(n, number shown)``.
    The default title gives the accuracy over all N images.
    """
    images, labels, predicted = np.asarray(images), np.asarray(labels), np.asarray(predicted)
    n = _args.check_int(n, "n", "plot_predictions")
    ncols = _args.check_int(ncols, "ncols", "plot_predictions")
    if images.ndim != 4 or labels.shape != (len(images),) or predicted.shape != (len(images),):
        raise ValueError(f"plot_predictions: need images (N, H, W, C), labels (N,) and predicted (N,); got shapes "
                         f"{images.shape}, {labels.shape}, {predicted.shape}.")
    wrong = labels != predicted
    order = np.flatnonzero(wrong) if only_mistakes else np.arange(len(images))
    if seed is not None:
        order = np.random.default_rng(seed).permutation(order)
    order = order[:n]
    if len(order) == 0:
        raise ValueError("plot_predictions: nothing to show (no images" + (", or no mistakes" if only_mistakes
                                                                          else "") + ").")
    accuracy = 1.0 - wrong.mean()
    fig, axes = panel_grid(len(order), ncols=ncols, panel_size=panel_size,
                           title=title or f"predicted (true): accuracy {accuracy:.4f} on {len(images)} images, "
                                          f"{int(wrong.sum())} mistakes")
    for ax, i in zip(axes, order):
        img = as_image(images[i], fn="plot_predictions", arg="images[i]")
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")
        pred = names_or_indices(class_names, int(predicted[i]))
        if wrong[i]:
            ax.set_title(f"{pred} ({names_or_indices(class_names, int(labels[i]))})", fontsize=8, color="red")
            for spine in ax.spines.values():
                spine.set_edgecolor("red")
                spine.set_linewidth(2.5)
        else:
            ax.set_title(pred, fontsize=8)
    return save(fig, path, dpi=dpi)
