"""`cnnjax train` and `cnnjax evaluate`: options parsed and checked here, before anything is written or read;
the work is done by `cnnjax.train.fit` and `cnnjax.train.evaluate`.

    cnnjax train --model mnist_cnn --dataset mnist --epochs 2 --data-dir DIR --checkpoint-dir runs/mnist
    cnnjax evaluate --model mnist_cnn --checkpoint-dir runs/mnist --data-dir DIR

``--data-dir`` is the folder with the raw distribution files, ``--prepared-dir`` the folder of prepared data
(see `cnnjax.cli.arguments`).
"""
from __future__ import annotations

import os
import sys
import time
import warnings

from cnnjax.cli.arguments import (DTYPES, add_data_dirs, fraction, int_at_least, load_from_flags, lookahead_pair,
                                  positive_float)
from cnnjax.cli.errors import UsageError
from cnnjax.cli.metrics_file import MetricsFile


def _add_dataset(p, datasets) -> None:
    p.add_argument("--dataset", default=None, metavar="NAME",
                   help=f"dataset: one of {', '.join(datasets)}, or an image-folder path (default: the model's own "
                        "dataset)")
    add_data_dirs(p)


def add_subcommands(sub, model_names, datasets) -> None:
    """Add `train` and `evaluate` to an argparse subparsers object (`model_names`, `datasets`: the valid names)."""
    from cnnjax.train import LOOPS, OPTIMIZERS, PARALLEL_MODES, SCHEDULES

    t = sub.add_parser("train", help="train a model (progress bar per epoch, final test accuracy)",
                       description="Train a cnnjax model on an in-memory dataset with Optax; prints a progress "
                                   "bar per epoch and ends with the test accuracy.")
    t.add_argument("--model", required=True, choices=model_names, metavar="NAME",
                   help=f"model name: {', '.join(model_names)}")
    _add_dataset(t, datasets)
    t.add_argument("--epochs", type=int_at_least("--epochs", 1), default=2, help="passes over the training set "
                   "(default 2)")
    t.add_argument("--batch-size", type=int_at_least("--batch-size", 1), default=128,
                   help="global batch size, split over devices with --parallel (default 128)")
    t.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", metavar="NAME",
                   help=f"optimizer: {', '.join(OPTIMIZERS)} (default adam)")
    t.add_argument("--lr", type=positive_float("--lr"), default=1e-3,
                   help="(peak) learning rate (default 1e-3)")
    t.add_argument("--schedule", choices=SCHEDULES, default="constant", metavar="NAME",
                   help=f"learning-rate schedule: {', '.join(SCHEDULES)} (default constant)")
    t.add_argument("--warmup-steps", type=int_at_least("--warmup-steps", 0), default=0,
                   help="linear warm-up steps from 0 to --lr (default 0)")
    t.add_argument("--momentum", type=fraction("--momentum"), default=None, help="SGD momentum (default 0.9)")
    t.add_argument("--nesterov", action="store_true", help="Nesterov momentum for SGD")
    t.add_argument("--weight-decay", type=float, default=0.0,
                   help="weight decay (decoupled for adamw, L2 added to the gradient otherwise; default 0)")
    t.add_argument("--label-smoothing", type=fraction("--label-smoothing"), default=0.0,
                   help="label smoothing eps in [0, 1) (default 0)")
    t.add_argument("--dtype", choices=DTYPES, default="float32",
                   help="compute dtype; params, loss and gradients stay float32; float16 scales the loss by the "
                   "batch for the backward pass (default float32)")
    t.add_argument("--seed", type=int, default=0, help="seed of initial weights, dropout and data order")
    t.add_argument("--parallel", choices=PARALLEL_MODES, default="none",
                   help="data parallelism over devices: none (jit on one device), pmap, or shard "
                        "(sharded jit over a Mesh; also across processes) (default none)")
    t.add_argument("--loop", choices=LOOPS, default="auto",
                   help="step: one jitted step per batch; scan: chunks of up to 100 steps in one lax.scan; "
                        "unroll: chunks of up to 8 steps unrolled in one program; auto: a fixed rule of the "
                        "backend and the model (same bits on every run); measure: time the three on this machine "
                        "before training and keep the fastest (default auto)")
    t.add_argument("--augment", default=None, metavar="SPEC",
                   help="augment each training batch inside the compiled step, e.g. 'flip,translate:2' or "
                        "'translate:2,cutout:8' (names: flip, translate[:pad], crop[:pad], cutout[:size]); "
                        "default none")
    t.add_argument("--lookahead", type=lookahead_pair, default=None, metavar="EVERY:ALPHA",
                   help="Lookahead around the optimizer: every EVERY steps the slow weights move ALPHA of the way "
                        "to the fast ones, which restart from them (e.g. 5:0.5); default none")
    t.add_argument("--data-on", choices=["auto", "device", "host"], default="auto",
                   help="where the training set lives: 'device' keeps it on the accelerator and gathers each batch "
                        "inside the compiled step; 'host' gathers batches on the host; 'auto': the device on an "
                        "accelerator when it fits (default auto)")
    t.add_argument("--no-keep-freed-memory", action="store_true",
                   help="leave glibc's malloc settings alone (by default this command keeps freed memory in its "
                        "process on a CPU, which makes XLA:CPU's steps faster)")
    t.add_argument("--ensemble", type=int_at_least("--ensemble", 1), default=1,
                   help="train N models with different seeds at once with vmap (default 1)")
    t.add_argument("--ensemble-lrs", type=positive_float("--ensemble-lrs"), nargs="+", default=None,
                   metavar="LR", help="train one vmapped member per learning rate instead")
    t.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                   help="save orbax checkpoints here at each epoch end (and every --checkpoint-every steps)")
    t.add_argument("--checkpoint-every", type=int_at_least("--checkpoint-every", 1), default=None,
                   metavar="STEPS", help="also save every STEPS optimizer steps")
    t.add_argument("--keep", type=int_at_least("--keep", 1), default=None, help="checkpoints kept (default 3)")
    t.add_argument("--resume", action="store_true",
                   help="continue from the latest checkpoint in --checkpoint-dir that verifies (same model and "
                        "settings; a folder without one is an error)")
    t.add_argument("--metrics-out", default=None, metavar="FILE",
                   help="write one JSON line per epoch (loss, accuracy, images/s, test loss and accuracy)")
    t.add_argument("--limit", type=int_at_least("--limit", 1), default=None, metavar="N",
                   help="use only N training images, spread evenly over the set, so that a class-sorted image "
                        "folder keeps all its classes (quick runs)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar (one line per epoch instead)")
    t.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="multi-process: address of process 0 (or $JAX_COORDINATOR_ADDRESS)")
    t.add_argument("--num-processes", type=int_at_least("--num-processes", 1), default=None,
                   help="multi-process: number of processes (or $JAX_NUM_PROCESSES)")
    t.add_argument("--process-id", type=int_at_least("--process-id", 0), default=None,
                   help="multi-process: this process's index (or $JAX_PROCESS_ID)")
    t.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="evaluate the latest checkpoint on a split",
                       description="Load the latest checkpoint of --checkpoint-dir and print loss and accuracy.")
    e.add_argument("--model", required=True, choices=model_names, metavar="NAME",
                   help=f"model name: {', '.join(model_names)}")
    _add_dataset(e, datasets)
    e.add_argument("--checkpoint-dir", required=True, metavar="DIR", help="folder written by `cnnjax train`")
    e.add_argument("--split", default="test", help="split to evaluate (default test)")
    e.add_argument("--batch-size", type=int_at_least("--batch-size", 1), default=1000,
                   help="evaluation batch size (default 1000)")
    e.add_argument("--dtype", choices=DTYPES, default="float32", help="compute dtype (default float32)")
    e.add_argument("--tta", choices=["flip", "translate", "flip_translate"], default=None,   # tta.TTA_MODES
                   help="test-time augmentation: 'flip' averages the logits of each image and its mirror image; "
                        "'flip_translate' also over one-pixel translations; 'translate' over the translations only")
    e.set_defaults(func=_evaluate)



def _check_dataset(name, args, splits_needed):
    from cnnjax import models
    from cnnjax.data import KNOWN_DATASETS
    from cnnjax.data.sources import IMAGE_SHAPES
    dataset = args.dataset or models.dataset(name)
    if dataset not in KNOWN_DATASETS and not os.path.isdir(dataset):
        raise UsageError(f"unknown dataset {dataset!r}; valid names: {', '.join(KNOWN_DATASETS)} "
                         "(or an image-folder path)")
    if os.path.isdir(dataset):
        from cnnjax.data.folder import folder_layout

        splits, _ = folder_layout(dataset)
        for split in splits_needed:    # said before any image is decoded
            if split not in splits:
                raise UsageError(f"--dataset {dataset!r} has no {split!r} split (its splits are {sorted(splits)}); "
                                 f"the layout is ROOT/<split>/<class>/<image>, e.g. ROOT/{split}/cat/1.jpg")
    expected = tuple(models.input_shape(name))
    if dataset in IMAGE_SHAPES and IMAGE_SHAPES[dataset] != expected:    # said before minutes of importing
        raise UsageError(f"model {name!r} takes images {expected} but dataset {dataset!r} has "
                         f"{IMAGE_SHAPES[dataset]}")
    return dataset


def _check_writable_file(path):
    folder = os.path.dirname(os.path.abspath(path)) or "."
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK) or (os.path.exists(path)
                                                                       and not os.access(path, os.W_OK)):
        raise UsageError(f"--metrics-out {path!r} cannot be written (folder {folder!r} missing or read-only)")


def _load(dataset, split, args):
    return load_from_flags(dataset, split, args, as_uint8=True)


def _train(args) -> int:
    from cnnjax.train import initialize
    initialize(args.coordinator, args.num_processes, args.process_id)

    import jax
    from cnnjax import models
    from cnnjax.sampling import spread_indices
    from cnnjax.train import fit
    from cnnjax.train.checkpoint import CheckpointCorruptError, Checkpointer, check_writable, writer_of

    dataset = _check_dataset(args.model, args, ("train", "test"))
    if args.weight_decay < 0:
        raise UsageError(f"--weight-decay must be >= 0, got {args.weight_decay}")
    if args.resume and not args.checkpoint_dir:
        raise UsageError("--resume needs --checkpoint-dir")
    for flag, given in (("--checkpoint-every", args.checkpoint_every is not None), ("--keep", args.keep is not None)):
        if given and not args.checkpoint_dir:
            raise UsageError(f"{flag} needs --checkpoint-dir (without one nothing is saved)")
    for flag, given in (("--nesterov", args.nesterov), ("--momentum", args.momentum is not None)):
        if given and args.optimizer != "sgd":
            raise UsageError(f"{flag} applies to --optimizer sgd only; --optimizer {args.optimizer} would ignore it")
    if args.ensemble_lrs and args.ensemble not in (1, len(args.ensemble_lrs)):
        raise UsageError(f"--ensemble {args.ensemble} disagrees with {len(args.ensemble_lrs)} --ensemble-lrs")
    if args.augment is not None:
        from cnnjax.functional.augment import from_spec
        try:
            from_spec(args.augment)          # said before any data is read
        except ValueError as e:
            raise UsageError(f"--augment {args.augment!r}: {e}") from None
    if args.metrics_out:
        _check_writable_file(args.metrics_out)
    saved_history = {}
    if args.checkpoint_dir:
        if args.resume and not os.path.isdir(args.checkpoint_dir):      # a mistyped folder: not created
            raise UsageError(f"--resume: {args.checkpoint_dir!r} does not exist; check the folder, or leave out "
                             "--resume to start from scratch")
        check_writable(args.checkpoint_dir)
        holder = writer_of(args.checkpoint_dir)
        if holder is not None:
            raise UsageError(f"--checkpoint-dir {args.checkpoint_dir!r} is being written by another run ({holder}); "
                             "wait for it to end, or choose another folder")
        if args.resume:
            ckpt = Checkpointer(args.checkpoint_dir)
            try:
                if ckpt.latest_step() is None:
                    raise UsageError(f"--resume: {args.checkpoint_dir!r} holds no checkpoint; check the folder, or "
                                     "leave out --resume to start from scratch")
                try:
                    saved_meta = ckpt.read_meta()
                except CheckpointCorruptError:
                    saved_meta = {}          # fit falls back to an older step that verifies, and says so
                saved = saved_meta.get("model")
                if saved is not None and saved != args.model:
                    raise UsageError(f"--resume: {args.checkpoint_dir!r} holds a checkpoint of model {saved!r}, "
                                     f"not {args.model!r}; use --model {saved} or another --checkpoint-dir")
                saved_history = saved_meta.get("history") or {}
            finally:
                ckpt.close()
        elif os.listdir(args.checkpoint_dir) and Checkpointer(args.checkpoint_dir).latest_step() is not None:
            raise UsageError(f"--checkpoint-dir {args.checkpoint_dir!r} already holds checkpoints; pass --resume "
                             "to continue them or choose an empty folder")

    train = _load(dataset, "train", args)
    test = _load(dataset, "test", args)
    images, labels = train.images, train.labels
    if args.limit and args.limit < len(images):
        # rows spread over the set, not the first ones: an image folder is read class by class, so its first N
        # images can all be one class
        keep = spread_indices(len(images), args.limit)
        images, labels = images[keep], labels[keep]
    if args.batch_size > len(images):
        raise UsageError(f"--batch-size {args.batch_size} is larger than the {len(images)} training images")
    expected = tuple(models.input_shape(args.model))
    if tuple(images.shape[1:]) != expected:
        raise UsageError(f"model {args.model!r} takes images {expected} but dataset {dataset!r} has "
                         f"{tuple(images.shape[1:])}")

    lead = jax.process_index() == 0
    metrics = MetricsFile(args.metrics_out, resume=args.resume, history=saved_history) \
        if args.metrics_out and lead else None

    def on_epoch_end(record):
        if metrics:
            metrics.write(record)
        if args.no_progress and lead:
            print(f"epoch {record['epoch']}/{args.epochs}: loss {record['loss']:.4f} accuracy "
                  f"{record['accuracy']:.4f} test_accuracy {record['val_accuracy']:.4f} "
                  f"{record['images_per_s']:,.0f} images/s", flush=True)

    if args.parallel == "pmap" and jax.local_device_count() == 1 and lead:
        print("cnnjax train: note: --parallel pmap with a single device runs like --parallel none",
              file=sys.stderr)
    model = models.get(args.model)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="note: --parallel pmap with a single device")
        state, history = fit(
            model, (images, labels), optimizer=args.optimizer, epochs=args.epochs, batch_size=args.batch_size,
            learning_rate=args.lr, schedule=args.schedule, warmup_steps=args.warmup_steps,
            momentum=0.9 if args.momentum is None else args.momentum, nesterov=args.nesterov,
            weight_decay=args.weight_decay,
            label_smoothing=args.label_smoothing, dtype=None if args.dtype == "float32" else args.dtype,
            validation_data=(test.images, test.labels), seed=args.seed, parallel=args.parallel,
            loop=args.loop, ensemble=args.ensemble, learning_rates=args.ensemble_lrs,
            checkpoint_dir=args.checkpoint_dir, checkpoint_every=args.checkpoint_every, keep=args.keep or 3,
            resume=args.resume, meta={"model": args.model, "dataset": dataset}, notes={"argv": sys.argv[1:]},
            progress=not args.no_progress and lead, on_epoch_end=on_epoch_end,
            keep_freed_memory=not args.no_keep_freed_memory, augment=args.augment,
            data_on_device={"auto": None, "device": True, "host": False}[args.data_on],
            lookahead=args.lookahead)
    seconds = time.perf_counter() - start
    if lead and history.get("val_accuracy"):
        members = history.get("val_accuracy_members")
        # an ensemble's figures are the mean of its members' (each trained and evaluated alone), not the
        # accuracy of their averaged predictions
        mean = f"mean of {len(members[-1])} members " if members else ""
        extra = (" (members: " + ", ".join(f"{a:.4f}" for a in members[-1]) + ")") if members else ""
        print(f"test accuracy: {mean}{history['val_accuracy'][-1]:.4f}{extra}  test loss: {mean}"
              f"{history['val_loss'][-1]:.4f}"
              f"  ({len(test.labels)} {dataset} test images; {args.model}, {len(history['epoch'])} epochs, "
              f"{seconds:.1f} s)", flush=True)
    return 0




def restore_latest(name, checkpoint_dir):
    """(model, model name, Checkpointer, params, batch_stats, meta) of the latest checkpoint in `checkpoint_dir`,
    checked against model `name` (None: the model the checkpoint names). The caller closes the Checkpointer."""
    import jax
    from cnnjax import models
    from cnnjax.train.checkpoint import Checkpointer

    if not os.path.isdir(checkpoint_dir):
        raise UsageError(f"--checkpoint-dir {checkpoint_dir!r} does not exist")
    ckpt = Checkpointer(checkpoint_dir)
    if ckpt.latest_step() is None:
        raise UsageError(f"no checkpoint in {checkpoint_dir!r}")
    saved_model = ckpt.read_meta().get("model")
    if name is None:
        if saved_model not in models.names():
            ckpt.close()
            raise UsageError(f"{checkpoint_dir!r} does not name a model of the zoo (it says {saved_model!r}); "
                             f"pass --model, one of {', '.join(models.names())}")
        name = saved_model
    if saved_model is not None and saved_model != name:
        ckpt.close()
        raise UsageError(f"{checkpoint_dir!r} holds a checkpoint of model {saved_model!r}, not {name!r}")
    model = models.get(name)
    shape = models.input_shape(name)
    fresh = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jax.numpy.zeros((1, *shape)), train=False))
    try:
        params, batch_stats, meta = ckpt.restore_variables(expected_params=fresh["params"])
    except Exception:
        ckpt.close()          # before the error is reported: orbax's pending reads end with it
        raise
    return model, name, ckpt, params, batch_stats, meta


def _evaluate(args) -> int:
    import jax
    import numpy as np
    from cnnjax.train import evaluate, member
    from cnnjax.train.state import TrainState

    dataset = _check_dataset(args.model, args, (args.split,))
    model, _, ckpt, params, batch_stats, meta = restore_latest(args.model, args.checkpoint_dir)
    split = _load(dataset, args.split, args)
    n_members = meta.get("ensemble", 1)
    full = TrainState(step=np.zeros((n_members,) if n_members > 1 else (), np.int32), params=params,
                      opt_state=None, batch_stats=batch_stats, rng=None)
    dtype = None if args.dtype == "float32" else args.dtype
    if dtype:
        model = model.clone(dtype=jax.numpy.dtype(dtype))
    for i in range(n_members):
        state = member(full, i) if n_members > 1 else full
        out = evaluate(model, state, (split.images, split.labels), batch_size=args.batch_size, tta=args.tta)
        who = f" member {i}" if n_members > 1 else ""
        print(f"{args.split} accuracy{who}: {out['accuracy']:.4f}  loss: {out['loss']:.4f}  "
              f"({len(split.labels)} {dataset} {args.split} images; {args.model}, checkpoint step "
              f"{ckpt.latest_step()})")
    ckpt.close()
    return 0


