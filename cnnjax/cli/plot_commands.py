"""`cnnjax plot curves|features|filters` (also `python -m cnnjax.viz ...`): short entry points over cnnjax.viz.

    cnnjax plot curves metrics.jsonl --out curves.png
    cnnjax plot features --model mnist_cnn --checkpoint-dir ckpt/ --data-dir DIR --layer conv2d --out fm.png
    cnnjax plot filters --model mnist_cnn --checkpoint-dir ckpt/ --out filters.png

Without `--checkpoint-dir` the model has its random initial weights (the title says so).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from cnnjax.cli.arguments import add_data_dirs, load_from_flags
from cnnjax.cli.errors import run_command


def _model_and_variables(args):
    import jax

    from cnnjax import models

    model = models.get(args.model)
    shape = models.input_shape(args.model)
    variables = model.init(jax.random.key(args.seed), np.zeros((1, *shape), np.float32))
    if args.checkpoint_dir:
        from cnnjax.train import Checkpointer

        if not os.path.isdir(args.checkpoint_dir):     # Checkpointer would create it (for writing)
            raise ValueError(f"--checkpoint-dir {args.checkpoint_dir!r} does not exist")
        ckpt = Checkpointer(args.checkpoint_dir)
        params, batch_stats, _ = ckpt.restore_variables(expected_params=variables["params"])
        ckpt.close()
        variables = {"params": params, **({"batch_stats": batch_stats} if batch_stats else {})}
        where = f"weights from {args.checkpoint_dir}"
    else:
        where = f"random initial weights (seed {args.seed})"
    return model, shape, variables, where


def _image(args, shape):
    from cnnjax import models

    if args.image:
        from PIL import Image

        with Image.open(args.image) as im:
            im = im.convert("L" if shape[2] == 1 else "RGB").resize((shape[1], shape[0]), Image.BILINEAR)
            x = np.asarray(im, np.float32) / 255.0
        return x.reshape(shape), args.image
    dataset = args.dataset or models.dataset(args.model)
    split = load_from_flags(dataset, "test", args)
    if not 0 <= args.index < len(split.images):
        raise ValueError(f"--index {args.index} is outside the {len(split.images)} test images of {dataset} "
                         f"(valid: 0 to {len(split.images) - 1}).")
    label = split.class_names[int(split.labels[args.index])]
    return split.images[args.index], f"{dataset} test image {args.index} ({label})"


def _curves(args) -> int:
    from cnnjax.viz.curves import plot_curves

    plot_curves(args.metrics, title=args.title or args.metrics, path=args.out)
    print(f"wrote {args.out}")
    return 0


def _features(args) -> int:
    from cnnjax.viz.maps import feature_maps, plot_feature_maps

    model, shape, variables, where = _model_and_variables(args)
    image, what = _image(args, shape)
    maps = feature_maps(model, variables, image, int(args.layer) if args.layer.lstrip("-").isdigit() else args.layer)
    title = f"{args.model} layer {args.layer}, {'x'.join(map(str, maps.shape))}: {what}; {where}"
    plot_feature_maps(maps, image=image, max_maps=args.max_maps, title=title, path=args.out)
    print(f"wrote {args.out}")
    return 0


def _filters(args) -> int:
    from cnnjax.viz.filters import conv_kernels, plot_filters
    from cnnjax.viz.maps import layer_paths

    model, shape, variables, where = _model_and_variables(args)
    kernels = conv_kernels(variables)               # {module path: kernel}
    if not kernels:
        raise ValueError(f"--model {args.model} has no 2-D conv kernel to draw.")
    name_of = {path: name for name, path in layer_paths(model, shape).items()}
    path = args.layer or next(iter(kernels))
    path = path if path in kernels else {name_of.get(p): p for p in kernels}.get(path, path)
    if path not in kernels:
        raise ValueError(f"--layer {args.layer!r} is not a conv layer of {args.model}; its conv layers are "
                         f"{', '.join(f'{name_of.get(p, p)} ({p})' for p in kernels)}.")
    layer = name_of.get(path, path)
    w = kernels[path]
    in_channel = args.in_channel if args.in_channel is not None or w.shape[2] in (1, 3) else 0
    plot_filters(w, in_channel=in_channel, max_filters=args.max_maps, path=args.out,
                 title=f"{args.model} {layer}: {w.shape[3]} filters {w.shape[0]}x{w.shape[1]}x{w.shape[2]}; {where}")
    print(f"wrote {args.out}")
    return 0


def _model_options(p) -> None:
    p.add_argument("--model", required=True, help="a model name (cnnjax.models.names())")
    p.add_argument("--checkpoint-dir", default=None, help="checkpoint folder written by `cnnjax train` (default: "
                   "the model's random initial weights)")
    p.add_argument("--seed", type=int, default=0, help="init seed when there is no checkpoint")
    p.add_argument("--max-maps", type=int, default=64, help="draw at most this many channels / filters")
    p.add_argument("--out", required=True, help="PNG file to write")


def add_subcommands(subparsers, prog: str | None = None) -> argparse.ArgumentParser:
    """Add `plot` with sub-commands `curves`, `features` and `filters` to an argparse subparsers object.
    ``prog``: the usage lines' program name (``python -m cnnjax.viz``; default ``cnnjax plot``)."""
    plot = subparsers.add_parser("plot", help="draw training curves, feature maps and filters as PNG files",
                                 **({"prog": prog} if prog else {}))
    sub = plot.add_subparsers(dest="plot_command", required=True, metavar="{curves,features,filters}")

    curves = sub.add_parser("curves", help="loss and accuracy per epoch from a --metrics-out JSON-lines file")
    curves.add_argument("metrics", help="JSON-lines metrics file (one object per epoch)")
    curves.add_argument("--out", required=True, help="PNG file to write")
    curves.add_argument("--title", default=None)
    curves.set_defaults(func=_curves)

    features = sub.add_parser("features", help="feature maps of one layer for one test image")
    _model_options(features)
    features.add_argument("--layer", default="0", help="the layer: its name in `cnnjax summary` (conv2d, "
                          "max_pooling2d), its module path (Conv2D_0) or its index in call order (default 0: the "
                          "first layer)")
    features.add_argument("--image", default=None, help="an image file (resized to the model's input); "
                          "default: a test image of --dataset")
    features.add_argument("--dataset", default=None, help="dataset of the test image (default: the model's)")
    add_data_dirs(features)
    features.add_argument("--index", type=int, default=0, help="which test image")
    features.set_defaults(func=_features)

    filters = sub.add_parser("filters", help="the filters of one conv layer")
    _model_options(filters)
    filters.add_argument("--layer", default=None, help="the conv layer: its name in `cnnjax summary` (conv2d, "
                         "conv2d_1) or its module path (Conv2D_0) (default: the first)")
    filters.add_argument("--in-channel", type=int, default=None,
                         help="input channel to draw (default: colour for 3, grey for 1, else channel 0)")
    filters.set_defaults(func=_filters)
    return plot


def main(argv=None) -> int:
    """`python -m cnnjax.viz curves|features|filters ...`."""
    parser = argparse.ArgumentParser(prog="python -m cnnjax.viz")
    add_subcommands(parser.add_subparsers(dest="command", required=True), prog="python -m cnnjax.viz")
    args = parser.parse_args(["plot", *(sys.argv[1:] if argv is None else argv)])
    return run_command(args, "python -m cnnjax.viz")
