"""`cnnjax export` and `cnnjax summary`: a checkpoint's model as a jax.export artifact, a zoo model's layer table.

    cnnjax export --checkpoint-dir runs/mnist --out mnist.jaxexport --platforms cpu,cuda
    cnnjax summary --model resnet20 --formulas
"""
from __future__ import annotations

import os

from cnnjax.cli.arguments import DTYPES
from cnnjax.cli.errors import UsageError
from cnnjax.cli.train_commands import restore_latest


def add_subcommands(sub, model_names) -> None:
    """Add `export` and `summary` to an argparse subparsers object (`model_names`: the valid model names)."""
    x = sub.add_parser("export", help="write the latest checkpoint's model as a jax.export artifact",
                       description="Write the model of the latest checkpoint in --checkpoint-dir as a serialized "
                                   "jax.export artifact with a symbolic batch (any batch size), plus a JSON sidecar "
                                   "FILE.json with its platforms, shapes, versions and BLAKE2b checksum; "
                                   "cnnjax.load_export(FILE) or jax.export.deserialize loads it.")
    x.add_argument("--checkpoint-dir", required=True, metavar="DIR", help="folder written by `cnnjax train`")
    x.add_argument("--out", required=True, metavar="FILE", help="artifact file to write (and FILE.json)")
    x.add_argument("--model", default=None, choices=model_names, metavar="NAME",
                   help="model name (default: the one the checkpoint names)")
    x.add_argument("--platforms", default=None, metavar="LIST",
                   help="comma-separated platforms to lower for, from cpu, cuda, rocm, tpu (default: cpu and the "
                        "platform of this machine)")
    x.add_argument("--input-dtype", choices=["float32", "uint8"], default="float32",
                   help="what the artifact takes: float32 images in [0, 1], or uint8 images 0..255 (default "
                        "float32)")
    x.add_argument("--probabilities", action="store_true", help="output softmax probabilities instead of logits")
    x.add_argument("--dtype", choices=DTYPES, default="float32", help="compute dtype (default float32)")
    x.add_argument("--member", type=int, default=None, metavar="I",
                   help="which member of an ensemble checkpoint to export")
    x.set_defaults(func=_export)

    s = sub.add_parser("summary", help="print a Keras-style layer table of a model",
                       description="Print a model's layers, output shapes and parameter counts.")
    s.add_argument("--model", required=True, choices=model_names, metavar="NAME",
                   help=f"model name: {', '.join(model_names)}")
    s.add_argument("--formulas", action="store_true", help="show the shape and parameter formulas")
    s.set_defaults(func=_summary)


def _export(args) -> int:
    import numpy as np
    from cnnjax import models
    from cnnjax.artifact import export
    from cnnjax.train import member
    from cnnjax.train.state import TrainState

    from cnnjax.artifact import PLATFORMS

    if args.member is not None and args.member < 0:
        raise UsageError(f"--member must be >= 0, got {args.member}")
    platforms = None if args.platforms is None else [p.strip() for p in args.platforms.split(",")]
    for p in platforms or ():          # all said before the checkpoint is read
        if p not in PLATFORMS:
            raise UsageError(f"--platforms: unknown platform {p!r}; valid: {', '.join(PLATFORMS)} (comma-separated, "
                             "e.g. cpu,cuda)")
    folder = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK) or os.path.isdir(args.out):
        raise UsageError(f"--out {args.out!r} cannot be written (folder {folder!r} missing or read-only, or "
                         f"{args.out!r} is a folder)")
    model, name, ckpt, params, batch_stats, meta = restore_latest(args.model, args.checkpoint_dir)
    step = ckpt.latest_step()
    ckpt.close()
    n_members = meta.get("ensemble", 1)
    state = TrainState(step=np.zeros((n_members,) if n_members > 1 else (), np.int32), params=params,
                       opt_state=None, batch_stats=batch_stats, rng=None)
    if n_members > 1:
        if args.member is None or args.member >= n_members:
            raise UsageError(f"{args.checkpoint_dir!r} holds an ensemble of {n_members} models; pick one with "
                             f"--member 0..{n_members - 1}")
        state = member(state, args.member)
    elif args.member not in (None, 0):
        raise UsageError(f"--member {args.member}: {args.checkpoint_dir!r} holds one model, not an ensemble")
    info = export(model, state, args.out, input_shape=models.input_shape(name), platforms=platforms,
                  dtype=None if args.dtype == "float32" else args.dtype, input_dtype=args.input_dtype,
                  probabilities=args.probabilities)
    print(f"wrote {args.out} ({info['bytes']:,} bytes; {name}, checkpoint step {step}"
          f"{f', member {args.member}' if n_members > 1 else ''}; platforms {', '.join(info['platforms'])}; "
          f"input [N, {', '.join(map(str, info['input']['shape'][1:]))}] {info['input']['dtype']}; "
          f"{info['output']['kind']}) and {args.out}.json")
    return 0


def _summary(args) -> int:
    from cnnjax import models
    from cnnjax.model_summary import summary
    print(summary(models.get(args.model), models.input_shape(args.model), formulas=args.formulas, name=args.model))
    return 0
