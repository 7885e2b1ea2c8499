"""`cnnjax data import|info` (also `python -m cnnjax.data ...`): short entry points over cnnjax.data.

    cnnjax data import mnist --data-dir DIR                    # raw files in DIR, arrays into --prepared-dir
    cnnjax data info mnist --splits test
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from cnnjax.cli.arguments import add_data_dirs, load_from_flags
from cnnjax.cli.errors import run_command


def _import(args) -> int:
    from cnnjax.data.cache import cache_file
    from cnnjax.data.loading import default_data_dir
    from cnnjax.data.prepare import prepare_from_files

    prepared = args.prepared_dir or default_data_dir()
    for name in args.names:
        start = time.perf_counter()
        prepare_from_files(name, args.data_dir, prepared)
        print(f"{name}: prepared in {os.path.dirname(cache_file(name, 'train', prepared))} "
              f"({time.perf_counter() - start:.1f} s)")
        if args.tfds:
            try:
                from cnnjax.data.builders import import_dataset   # needs TensorFlow: cnnjax[tf]
            except ImportError as err:   # one line from the CLI, not a traceback
                raise ValueError(f"--tfds: {err}") from err
            start = time.perf_counter()
            path = import_dataset(name, args.data_dir, data_dir=prepared)
            print(f"{name}: tensorflow-datasets copy in {path} ({time.perf_counter() - start:.1f} s)")
    return 0


def _info(args) -> int:
    if os.path.isdir(args.name) and not args.validation_fraction:
        from cnnjax.data.folder import folder_layout

        splits, _ = folder_layout(args.name)
        missing = [s for s in args.splits if s not in splits]
        if missing:    # said in this command's flags, before any image is decoded
            hint = " (pass --validation-fraction F, 0 < F < 1, to carve one from 'train')" \
                if "validation" in missing else ""
            raise ValueError(f"--splits: {args.name!r} has no split {', '.join(map(repr, missing))}; its splits are "
                             f"{sorted(splits)}{hint}.")
    for split in args.splits:
        s = load_from_flags(args.name, split, args, as_uint8=True, validation_fraction=args.validation_fraction,
                            image_size=args.image_size)
        counts = [int((s.labels == k).sum()) for k in range(len(s.class_names))]
        print(f"{args.name} {split}: images {s.images.shape} uint8, pixel mean {s.images.mean() / 255:.4f}")
        print("  per class: " + ", ".join(f"{c}={n}" for c, n in zip(s.class_names, counts)))
    return 0


def add_subcommands(subparsers, prog: str | None = None) -> argparse.ArgumentParser:
    """Add `data` with sub-commands `import` and `info` to an argparse subparsers object; returns its parser.
    ``prog``: the usage lines' program name (``python -m cnnjax.data``; default ``cnnjax data``)."""
    from cnnjax.data.sources import KNOWN_DATASETS

    data = subparsers.add_parser("data", help="import and inspect datasets (offline)",
                                 **({"prog": prog} if prog else {}))
    sub = data.add_subparsers(dest="data_command", required=True, metavar="{import,info}")

    imp = sub.add_parser("import", help="prepare datasets from local distribution files, no network (the arrays "
                                        "load reads; --tfds also a tensorflow-datasets copy)")
    imp.add_argument("names", nargs="+", choices=KNOWN_DATASETS, metavar="NAME", help=f"one of {KNOWN_DATASETS}")
    add_data_dirs(imp, source_alias=True, required=True)
    imp.add_argument("--tfds", action="store_true",
                     help="also write a tensorflow-datasets copy that tfds.load reads (needs TensorFlow: "
                          "pip install 'cnnjax[tf]')")
    imp.set_defaults(func=_import)

    info = sub.add_parser("info", help="load splits and print shapes, class counts and pixel mean")
    info.add_argument("name", help=f"one of {KNOWN_DATASETS} or an image-folder path")
    info.add_argument("--splits", nargs="+", default=["train", "test"], help="splits to load (default train test)")
    add_data_dirs(info, source_alias=True)
    info.add_argument("--validation-fraction", type=float, default=0.0,
                      help="image folders: carve this fraction of 'train' out as 'validation' (default 0)")
    info.add_argument("--image-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                      help="resize the images to H x W (default: as stored)")
    info.set_defaults(func=_info)
    return data


def main(argv=None) -> int:
    """`python -m cnnjax.data import|info ...`."""
    parser = argparse.ArgumentParser(prog="python -m cnnjax.data")
    add_subcommands(parser.add_subparsers(dest="command", required=True), prog="python -m cnnjax.data")
    args = parser.parse_args(["data", *(sys.argv[1:] if argv is None else argv)])
    return run_command(args, "python -m cnnjax.data")
