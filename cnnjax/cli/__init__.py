"""The `cnnjax` command line, the top layer of the package: nothing in the library imports it.

    cnnjax train --model mnist_cnn --dataset mnist --epochs 2 --data-dir DIR
    cnnjax evaluate --model mnist_cnn --checkpoint-dir runs/mnist --data-dir DIR
    cnnjax export --checkpoint-dir runs/mnist --out mnist.jaxexport --platforms cpu,cuda
    cnnjax summary --model resnet20
    cnnjax data import mnist --data-dir DIR
    cnnjax plot curves metrics.jsonl --out curves.png

``--data-dir`` is always the folder with the raw distribution files, ``--prepared-dir`` the folder of prepared
data (default ``$CNNJAX_DATA_DIR``, else ``~/tensorflow_datasets``). One module per command group:
`train_commands` (train, evaluate), `model_commands` (export, summary), `data_commands` (data import, info),
`plot_commands` (plot curves, features, filters); `arguments` holds the shared flags and value types, `errors`
the one-line error reports. Options are checked before anything is written; a user's mistake prints one line
``cnnjax <command>: error: ...`` and exits with status 2.
"""
from __future__ import annotations

import argparse
import os

from cnnjax.cli import data_commands, model_commands, plot_commands, train_commands
from cnnjax.cli.errors import UsageError, run_command
from cnnjax.cli.metrics_file import MetricsFile

__all__ = ["main", "build_parser", "run_command", "version_line", "UsageError", "MetricsFile"]


def version_line() -> str:
    """``cnnjax <version> (jax <version>, flax <version>)``."""
    import flax
    import jax

    from cnnjax.version import __version__
    return f"cnnjax {__version__} (jax {jax.__version__}, flax {flax.__version__})"


def build_parser() -> argparse.ArgumentParser:
    """The parser of every `cnnjax` sub-command: train, evaluate, export, summary, data, plot."""
    from cnnjax import models
    from cnnjax.data import KNOWN_DATASETS

    parser = argparse.ArgumentParser(prog="cnnjax", description="Convolutional neural networks in JAX.")
    parser.add_argument("--version", action="version", version=version_line(),
                        help="print the versions of cnnjax, jax and flax and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train_commands.add_subcommands(sub, models.names(), KNOWN_DATASETS)
    model_commands.add_subcommands(sub, models.names())
    data_commands.add_subcommands(sub)
    plot_commands.add_subcommands(sub)
    return parser


def main(argv=None) -> int:
    """Entry point of the `cnnjax` console script; returns the exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_command(args, f"cnnjax {args.command}")

