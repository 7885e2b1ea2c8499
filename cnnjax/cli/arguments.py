"""What the commands of the `cnnjax` command line share: argparse value types that check their value (each error
names the flag, the value and what is valid), the data-folder flags and loading a split through them.

Two folders, one meaning each, on every command that reads data:

- ``--data-dir DIR``: the folder with the raw distribution files (e.g. ``DIR/mnist/*-ubyte.gz``,
  ``DIR/cifar-10-python.tar.gz``); read only, never written;
- ``--prepared-dir DIR``: the folder of prepared data, where cnnjax keeps its array cache (and tensorflow-datasets
  copies); default ``$CNNJAX_DATA_DIR``, else ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``.
"""
from __future__ import annotations

import argparse
import math
import os

DTYPES = ("float32", "bfloat16", "float16")
DATA_DIR_HELP = ("folder with the raw distribution files (e.g. DIR/mnist/*-ubyte.gz or DIR/cifar-10-python.tar.gz), "
                 "read offline and prepared once into --prepared-dir")
PREPARED_DIR_HELP = ("folder of prepared data: cnnjax's array cache and tensorflow-datasets copies (default "
                     "$CNNJAX_DATA_DIR, else $TFDS_DATA_DIR, else ~/tensorflow_datasets)")


def positive_float(name):
    """argparse type: a finite number > 0."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"{name} must be > 0, got {text}")
        return value
    return parse


def int_at_least(name, minimum):
    """argparse type: an integer >= `minimum`."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{name} must be >= {minimum}, got {value}")
        return value
    return parse


def fraction(name):
    """argparse type: a number in [0, 1)."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number in [0, 1), got {text!r}") from None
        if not 0.0 <= value < 1.0:
            raise argparse.ArgumentTypeError(f"{name} must be in [0, 1), got {text}")
        return value
    return parse


def lookahead_pair(text):
    """argparse type of ``--lookahead EVERY:ALPHA``: (EVERY an int >= 1, ALPHA in (0, 1])."""
    every, _, alpha = text.partition(":")
    try:
        every, alpha = int(every), float(alpha)
    except ValueError:
        every = alpha = None
    if every is None or every < 1 or not 0.0 < alpha <= 1.0:
        raise argparse.ArgumentTypeError(f"--lookahead must be EVERY:ALPHA with EVERY an int >= 1 and ALPHA in "
                                         f"(0, 1], e.g. 5:0.5; got {text!r}")
    return every, alpha


def add_data_dirs(parser, *, source_alias: bool = False, required: bool = False) -> None:
    """Add ``--data-dir`` (raw distribution files) and ``--prepared-dir`` (prepared data) to `parser`.
    `source_alias`: ``--source`` is also accepted for ``--data-dir`` (its earlier name in ``cnnjax data``); giving
    both is an error naming both. `required`: one of them must be given."""
    if source_alias:
        group = parser.add_mutually_exclusive_group(required=required)
        group.add_argument("--data-dir", dest="data_dir", default=None, metavar="DIR", help=DATA_DIR_HELP)
        group.add_argument("--source", dest="data_dir", default=None, metavar="DIR",
                           help="the same as --data-dir (its earlier name here)")
    else:
        parser.add_argument("--data-dir", default=None, required=required, metavar="DIR", help=DATA_DIR_HELP)
    parser.add_argument("--prepared-dir", default=None, metavar="DIR", help=PREPARED_DIR_HELP)


def load_from_flags(name, split: str, args, **kwargs):
    """``cnnjax.data.load(name, split, data_dir=args.data_dir, prepared_dir=args.prepared_dir, **kwargs)``; where
    nothing is found and ``--data-dir`` holds prepared data instead of raw files (a cnnjax array cache), the error
    says to pass that folder as ``--prepared-dir``."""
    from cnnjax.data import DataNotFoundError, load

    try:
        return load(name, split, data_dir=args.data_dir, prepared_dir=args.prepared_dir, **kwargs)
    except DataNotFoundError as err:
        if args.data_dir and os.path.isdir(os.path.join(args.data_dir, "_cnnjax_arrays")):
            raise DataNotFoundError(f"{err} --data-dir {args.data_dir!r} holds prepared data (a cnnjax array "
                                    f"cache), not raw files: pass it as --prepared-dir {args.data_dir}.") from None
        raise
