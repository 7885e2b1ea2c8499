"""Feature maps: what each layer of a model outputs for one image, drawn one grey picture per channel.

A convolution layer with ``C`` filters turns an ``(H, W, C_in)`` image into ``C`` maps of ``(H', W')``; the notes
plot each map as a grey image, side by side. :func:`layer_outputs` runs the model once with Flax's
``capture_intermediates`` and returns every layer's output by its module path (``"Conv2D_0"``,
``"MaxPooling2D_0"``, ``"layers_0"`` in a ``Sequential``); :func:`feature_maps` picks one layer by the name
:func:`cnnjax.summary` prints (``"conv2d"``, ``"max_pooling2d_1"``; :func:`layer_paths` maps these names to the
paths), by its module path, or by its position in call order.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional, Union

import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from cnnjax.layers.sequential import takes_train
from cnnjax.nnx.adapter import as_linen, is_nnx, linen_variables
from cnnjax import _args
from cnnjax.viz._figure import as_image, panel_grid, save, show_grey
from cnnjax.functional.images import as_float_images

__all__ = ["as_variables", "layer_outputs", "feature_maps", "plot_feature_maps", "plot_layer_feature_maps"]


def as_variables(variables: Any) -> Dict[str, Any]:
    """Flax variables from a variables dict (``{"params": ...}``), a ``cnnjax.train.TrainState`` or a Flax NNX
    model (its own variables, in the linen layout of :func:`cnnjax.nnx.linen_variables`)."""
    if is_nnx(variables):
        return linen_variables(variables)
    if hasattr(variables, "params"):
        out = {"params": variables.params}
        if getattr(variables, "batch_stats", None):
            out["batch_stats"] = variables.batch_stats
        return out
    if isinstance(variables, Mapping) and "params" in variables:
        return dict(variables)
    raise TypeError(f"viz: variables must be a dict with a 'params' entry or a TrainState, "
                    f"got {type(variables).__name__}.")


def _batch(image, fn: str) -> jnp.ndarray:
    x = np.asarray(image)
    if x.dtype == np.uint8:
        x = np.asarray(as_float_images(x))
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"{fn}: image must be (H, W, C) or a batch (N, H, W, C) in NHWC layout, "
                         f"got shape {np.shape(image)}.")
    return jnp.asarray(x, jnp.float32)


def _walk(tree: Mapping, prefix: str, out: Dict[str, Any]) -> None:
    for key, value in tree.items():
        if key == "__call__":
            continue
        path = f"{prefix}/{key}" if prefix else key
        if isinstance(value, Mapping):
            _walk(value, path, out)
            if "__call__" in value:
                out[path] = value["__call__"][0]


def layer_outputs(model, variables, images) -> Dict[str, jnp.ndarray]:
    """Every submodule's output for ``images``, in call order: ``{module path: array}``.

    images: ``(N, H, W, C)`` (or one ``(H, W, C)`` image, given a batch axis of 1), float in [0, 1] or uint8.
    The model runs in inference mode (``train=False`` where the model takes it); a layer called twice keeps
    its first output. Composite modules (e.g. a residual block) appear after their own layers. An NNX ``model``
    runs through :func:`cnnjax.nnx.as_linen` (paths: its layers' attribute names), with its own variables where
    ``variables`` is None.
    """
    if is_nnx(model):
        model, variables = as_linen(model), model if variables is None else variables
    x = _batch(images, "layer_outputs")
    kwargs = {"train": False} if takes_train(model) else {}
    _, state = model.apply(as_variables(variables), x, capture_intermediates=True, mutable=["intermediates"],
                           **kwargs)
    out: Dict[str, Any] = {}
    _walk(state["intermediates"], "", out)
    return out


def layer_paths(model, input_shape) -> Dict[str, str]:
    """``{name: module path}`` of every layer, in call order: the names :func:`cnnjax.summary` prints
    (``"conv2d"``, ``"dense_1"``, or a layer's own ``name``), the paths Flax gives the modules and their
    parameters (``"Conv2D_0"``; ``"layers_0"`` in a ``Sequential``). ``input_shape``: one example, no batch axis.
    The one naming scheme of the plots: they take the summary's names, and the paths as aliases."""
    from cnnjax.model_summary import layer_table

    return {row["name"]: row["path"] for row in layer_table(model, input_shape)["rows"]}


def feature_maps(model, variables, image, layer: Union[int, str]) -> np.ndarray:
    """The output of one layer for one image, ``(H', W', C')`` (or ``(features,)`` after Flatten/Dense).

    layer: the name :func:`cnnjax.summary` prints (``"conv2d"``, ``"conv2d_1"``), the module path as an alias
    (``"Conv2D_0"``, ``"layers_0"``; see :func:`layer_paths`), or the position in call order (0 = first layer;
    negative counts from the end).
    """
    x = _batch(image, "feature_maps")
    if x.shape[0] != 1:
        raise ValueError(f"feature_maps: image must be one image (H, W, C) or (1, H, W, C), got shape {x.shape}.")
    outputs = layer_outputs(model, variables, x)
    paths = list(outputs)
    if isinstance(layer, (int, np.integer)) and not isinstance(layer, bool):
        if not -len(paths) <= layer < len(paths):
            raise ValueError(f"feature_maps: layer={layer} is out of range; the model has {len(paths)} layer "
                             f"outputs: {', '.join(paths)}.")
        path = paths[layer]
    elif isinstance(layer, str):
        names = {} if layer in outputs else layer_paths(model, tuple(x.shape[1:]))
        path = layer if layer in outputs else names.get(layer)
        if path not in outputs:
            raise ValueError(f"feature_maps: no layer named {layer!r}; the layers are {', '.join(names)} (the names "
                             f"cnnjax.summary prints; module paths such as {paths[0]!r} and indices also work).")
    else:
        raise TypeError(f"feature_maps: layer must be an int index or a str name, got {layer!r}.")
    return np.asarray(outputs[path][0])


MapsLike = Union[np.ndarray, Mapping[str, np.ndarray]]


def _as_maps(maps, fn: str, name: str) -> np.ndarray:
    a = np.asarray(maps, np.float32)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3:
        raise ValueError(f"{fn}: feature maps {name!r} must be (H, W, C) or (1, H, W, C) channels last, got "
                         f"shape {np.shape(maps)}; for a flat layer (Dense, Flatten) there are no maps to draw.")
    return a


def plot_feature_maps(maps: MapsLike, *, image=None, max_maps: int = 64, ncols: int = 8,
                      title: Optional[str] = None, shared_scale: bool = False, panel_size: float = 1.2,
                      path: Optional[str | os.PathLike] = None, dpi: int = 80) -> Figure:
    """One grey panel per channel of ``maps`` (H, W, C), in channel order, as the lecture notes draw them.

    maps: an array ``(H, W, C)`` / ``(1, H, W, C)``, or a mapping ``{row title: maps}`` for several stages
    (e.g. ``{"conv 14x14x5": a, "max pool 7x7x5": b}``), each stage starting a new row.
    image: if given, drawn first (panel 0) as the input. At most ``max_maps`` channels per stage are drawn.
    Each panel is scaled to its own min..max unless ``shared_scale`` (one scale per stage).
    Panels: ``[1 if image] + sum(min(C, max_maps))``. Saved as PNG to ``path`` when given.
    """
    max_maps = _args.check_int(max_maps, "max_maps", "plot_feature_maps")
    ncols = _args.check_int(ncols, "ncols", "plot_feature_maps")
    stages = dict(maps) if isinstance(maps, Mapping) else {"": maps}
    if not stages:
        raise ValueError("plot_feature_maps: maps is an empty mapping; give at least one (H, W, C) array.")
    stages = {name: _as_maps(m, "plot_feature_maps", name) for name, m in stages.items()}
    counts = [min(m.shape[-1], max_maps) for m in stages.values()]
    width = min(ncols, max(counts) + (1 if image is not None else 0))
    # layout: the input image (if any) and each stage start on a new row
    rows = []
    if image is not None:
        rows.append(("input", None, 1))
    for (name, m), c in zip(stages.items(), counts):
        rows.append((name, m, c))
    row_starts, slots = [], 0
    for _, _, c in rows:
        row_starts.append(slots)
        slots += -(-c // width) * width
    fig, axes = panel_grid(slots, ncols=width, title=title, panel_size=panel_size)
    used = set()
    for (name, m, c), start in zip(rows, row_starts):
        if m is None:
            ax = axes[start]
            img = as_image(image, fn="plot_feature_maps")
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")
            ax.set_title(f"input {img.shape[0]}x{img.shape[1]}", fontsize=7)
            used.add(start)
            continue
        lo, hi = (float(m.min()), float(m.max())) if shared_scale else (None, None)
        for k in range(c):
            ax = axes[start + k]
            show_grey(ax, m[..., k], vmin=lo, vmax=hi)
            ax.set_title(f"#{k}", fontsize=7)
            if name and k == 0:
                ax.set_ylabel(name, fontsize=7)
            used.add(start + k)
    for i, ax in enumerate(axes):
        if i not in used:
            fig.delaxes(ax)
    return save(fig, path, dpi=dpi)


def plot_layer_feature_maps(model, variables, image, layer: Union[int, str], *, show_input: bool = True,
                            title: Optional[str] = None, **kwargs) -> Figure:
    """:func:`feature_maps` of ``layer`` for ``image``, drawn by :func:`plot_feature_maps` (keyword arguments
    pass through). The title names the layer and its output shape unless given."""
    maps = feature_maps(model, variables, image, layer)
    if title is None:
        title = f"layer {layer}: {'x'.join(map(str, maps.shape))} feature maps"
    return plot_feature_maps(maps, image=image if show_input else None, title=title, **kwargs)
