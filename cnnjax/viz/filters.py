"""Convolution filters as pictures: one panel per filter of a ``(kh, kw, in_channels, filters)`` (HWIO) kernel."""
from __future__ import annotations

import os
from typing import Any, Dict, Optional

import jax
import numpy as np
from matplotlib.figure import Figure

from cnnjax import _args
from cnnjax.viz._figure import panel_grid, save, show_grey
from cnnjax.viz.maps import as_variables

__all__ = ["conv_kernels", "plot_filters"]


def conv_kernels(variables: Any) -> Dict[str, np.ndarray]:
    """Every 2-D convolution kernel in ``variables`` (dict or TrainState): ``{module path: (kh, kw, C, K)}``.

    A kernel is a parameter named ``"kernel"`` with 4 axes (Dense kernels have 2), in parameter order. The keys
    are module paths (``"Conv2D_0"``, ``"layers_0"``): the variables alone carry no other name;
    ``layer_paths(model, input_shape)`` maps the summary's names (``"conv2d"``) to them.
    """
    params = as_variables(variables)["params"]
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        keys = [str(getattr(k, "key", getattr(k, "idx", k))) for k in path]
        if keys and keys[-1] == "kernel" and np.ndim(leaf) == 4:
            out["/".join(keys[:-1])] = np.asarray(leaf)
    return out


def plot_filters(kernel, *, in_channel: Optional[int] = None, max_filters: int = 64, ncols: int = 8,
                 title: Optional[str] = None, panel_size: float = 1.0, path: Optional[str | os.PathLike] = None,
                 dpi: int = 80) -> Figure:
    """One panel per filter ``k`` of ``kernel[:, :, :, k]`` (HWIO), at most ``max_filters``.

    With 3 input channels and ``in_channel=None`` each filter is drawn in colour, its weights mapped linearly
    from ``[min, max]`` of that filter to ``[0, 1]``; with 1 input channel, or with ``in_channel=c``, the
    weights ``kernel[:, :, c, k]`` are drawn grey on one scale shared by all panels (so signs compare: dark is
    negative, light positive). Panels: ``min(filters, max_filters)``.
    """
    w = np.asarray(kernel, np.float32)
    if w.ndim != 4:
        raise ValueError(f"plot_filters: kernel must be (kh, kw, in_channels, filters) (HWIO), got shape {w.shape}; "
                         "pick one from conv_kernels(variables).")
    max_filters = _args.check_int(max_filters, "max_filters", "plot_filters")
    ncols = _args.check_int(ncols, "ncols", "plot_filters")
    cin, n = w.shape[2], min(w.shape[3], max_filters)
    if in_channel is not None and not (isinstance(in_channel, (int, np.integer)) and 0 <= in_channel < cin):
        raise ValueError(f"plot_filters: in_channel={in_channel!r} must be an int in [0, {cin}) for a kernel "
                         f"with {cin} input channels.")
    colour = in_channel is None and cin == 3
    if in_channel is None and cin not in (1, 3):
        raise ValueError(f"plot_filters: the kernel has {cin} input channels; pass in_channel=c (0 <= c < {cin}) "
                         "to draw the weights that see input channel c.")
    fig, axes = panel_grid(n, ncols=ncols, panel_size=panel_size,
                           title=title or f"{n} filters {w.shape[0]}x{w.shape[1]}x{cin}")
    grey = w[:, :, 0 if in_channel is None else in_channel, :n]
    lo, hi = float(grey.min()), float(grey.max())
    for k, ax in enumerate(axes):
        if colour:
            f = w[..., k]
            span = float(f.max() - f.min()) or 1.0
            ax.imshow((f - f.min()) / span, interpolation="nearest")
        else:
            show_grey(ax, grey[..., k], vmin=lo, vmax=hi)
        ax.set_title(f"#{k}", fontsize=7)
    return save(fig, path, dpi=dpi)
