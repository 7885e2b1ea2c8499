"""Pictures of what a CNN sees and how it learns (matplotlib; each function returns a ``Figure``).

Every ``plot_*`` function builds a pyplot-free ``matplotlib.figure.Figure`` (no display needed, nothing global)
and, given ``path=``, also writes it as a PNG:

- :func:`plot_feature_maps` / :func:`plot_layer_feature_maps`: one grey picture per channel of a layer's output;
  :func:`layer_outputs` and :func:`feature_maps` give the arrays.
- :func:`plot_filters`: the filters of a conv kernel (HWIO); :func:`conv_kernels` finds them in the parameters.
- :func:`plot_edge_masks`: the notes' edge masks (:func:`edge_masks`, :func:`line_filters`) applied to an image.
- :func:`plot_curves`: loss and accuracy per epoch, train and test, from a ``fit`` history or a
  ``--metrics-out`` JSON-lines file (:func:`read_metrics`).
- :func:`plot_predictions`: test images titled "predicted (true)", mistakes in red; :func:`predict`.
- :func:`plot_confusion_matrix` of :func:`confusion_matrix`.

Command line: ``cnnjax plot curves|features|filters ...`` (:mod:`cnnjax.cli.plot_commands`).
"""
from cnnjax.viz.confusion import confusion_matrix, plot_confusion_matrix
from cnnjax.viz.curves import plot_curves, read_metrics
from cnnjax.viz.edges import apply_masks, edge_masks, line_filters, plot_edge_masks
from cnnjax.viz.maps import (as_variables, feature_maps, layer_outputs, layer_paths, plot_feature_maps,
                             plot_layer_feature_maps)
from cnnjax.viz.filters import conv_kernels, plot_filters
from cnnjax.viz.predictions import plot_predictions, predict

__all__ = [
    "layer_outputs", "layer_paths", "feature_maps", "plot_feature_maps", "plot_layer_feature_maps", "as_variables",
    "conv_kernels", "plot_filters", "edge_masks", "line_filters", "apply_masks", "plot_edge_masks",
    "read_metrics", "plot_curves", "predict", "plot_predictions", "confusion_matrix", "plot_confusion_matrix",
]
