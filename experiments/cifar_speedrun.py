"""CIFAR-10 speedrun: the recipe ``cnnjax.train.recipes.cifar10_speedrun`` trained by ``fit``, several seeds, one
table.

Target (issue 7, issue 28): reach airbench94's 90.66% mean test accuracy (with test-time augmentation; the JPEG
copy of CIFAR-10 in ../shared/data), on one H100 in less than its 2.34 s. Each seed is one run of
:func:`cnnjax.train.recipes.run_recipe`: the recipe (normalisation statistics and whitening kernel from the
training images: ``recipe s``, once for all seeds), then ``fit`` (``train s``, wall-clock, with the compilation
of its step in the first epoch: ``first epoch s``; ``epoch s`` is the mean of the later epochs), then the final
evaluation with ``--tta-level``'s test-time augmentation (``eval s``, its compilation included). ``total s`` is
train + eval. The whitening kernel and statistics are computed on the host before the clock (airbench94 times
them; on a GPU they take milliseconds).

    python experiments/cifar_speedrun.py --quick                                   # synthetic data, seconds
    python experiments/cifar_speedrun.py --train-limit 2000 --epochs 2 --seeds 0   # CPU smoke run, real data
    python experiments/cifar_speedrun.py --data-dir .data --seeds 0 1 2 3 4 --warmup 1 --dtype bfloat16  # GPU run

Reads CIFAR-10 with numpy/PIL only (no TensorFlow needed: the GPU machine has none) from
``DATA_DIR/cifar10-jpeg.tar.xz``; ``--cache FILE.npz`` keeps the decoded arrays for the next run. Prints a
markdown table (per seed: accuracy, accuracy with TTA, train, eval, total seconds, the first epoch's and the
later epochs' seconds; mean ± std; the JSON adds each run's ``process_cpu_seconds``, the CPU time of all the
process's threads over training and evaluation) and writes it with the machine, versions and settings as JSON to ``--out``,
rewritten after every seed.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _common  # noqa: E402
DEFAULT_DATA = os.environ.get("CNNJAX_SHARED_DATA", os.path.join(HERE, "..", "..", "shared", "data"))
ARCHIVE = "cifar10-jpeg.tar.xz"
TARGET = 0.9066          # airbench94's mean accuracy with TTA on this JPEG copy (../shared/anchors/RESULTS.md)


def parser(description: str, files: str, *, cache: bool = True, preset=None) -> argparse.ArgumentParser:
    """The options of both speedrun scripts (this one and mnist_speedrun.py); ``files`` names what --data-dir
    must hold, ``preset`` the script's overrides of SpeedrunSettings (its help shows the defaults they give)."""
    from cnnjax.train import LOOPS
    from cnnjax.train.recipes import SpeedrunSettings

    d = SpeedrunSettings(**(preset or {}))
    level = {None: 0, "flip": 1, "translate": 2, "flip_translate": 2}[d.tta]
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=DEFAULT_DATA, help=f"folder holding {files} (default ../shared/data "
                   "or $CNNJAX_SHARED_DATA)")
    if cache:
        p.add_argument("--cache", default=None, help="an .npz file for the decoded arrays (read if present, "
                       "else written)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--epochs", type=int, default=None, help=f"whole epochs (fit's); default: the recipe's {d.epochs}")
    p.add_argument("--batch-size", type=int, default=None, help=f"default: the recipe's {d.batch_size}")
    p.add_argument("--widths", type=int, nargs=3, default=None,
                   help=f"default: {' '.join(str(w) for w in d.widths)}")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--loop", default="auto", choices=list(LOOPS), help="fit's loop form (default auto: its rule)")
    p.add_argument("--tta-level", type=int, default=None, choices=[0, 1, 2], help=f"0: none, 1: + mirror, 2: + mirror "
                   f"and 1-pixel translations (without flips: the translations only); default: {level}")
    p.add_argument("--train-limit", type=int, default=None, help="read only the first N training images "
                   "(CIFAR-10: N/10 per class, and the test split cut to the same count per class): CPU smoke runs")
    p.add_argument("--warmup", type=int, default=0, help="untimed, unreported runs before the seeds (fit compiles "
                   "its step in every run; a warm-up fills JAX's persistent compilation cache where "
                   "JAX_COMPILATION_CACHE_DIR is set, and pays the device's one-time costs)")
    p.add_argument("--eval-each-epoch", action="store_true", help="also report test accuracy (no TTA) after each "
                   "epoch (fit's validation_data; inside train s)")
    p.add_argument("--progress", action="store_true", help="fit's progress bars")
    p.add_argument("--quick", action="store_true", help="synthetic data, tiny widths, 1 epoch: checks the script "
                   "end to end in seconds (the numbers mean nothing)")
    p.add_argument("--set", nargs="+", default=[], metavar="FIELD=VALUE", help="any other SpeedrunSettings field, "
                   "e.g. --set lr=5.75 translate=1 whiten_sample=first (values as Python literals, or words)")
    p.add_argument("--out", default=None, help="write the results as JSON to this file")
    return p


def _settings(pairs) -> dict:
    """``["lr=5.75", "flip=False", "whiten_sample=first"]`` -> ``{"lr": 5.75, "flip": False, "whiten_sample":
    "first"}``: Python literals, and a bare word as a string; SystemExit naming a malformed pair."""
    import ast

    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"--set {pair!r}: expected FIELD=VALUE, e.g. lr=5.75")
        try:
            out[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            if not value.isidentifier():
                raise SystemExit(f"--set {pair!r}: {value!r} is neither a Python literal (a number, True/False, "
                                 f"a tuple) nor a word")
            out[name] = value
    return out


def parse_args(argv=None):
    return parser(__doc__, ARCHIVE).parse_args(argv)


def load_cifar10(data_dir: str, train_limit=None, cache=None):
    """(x_train, y_train, x_test, y_test): uint8 NHWC and int32 labels, decoded with PIL from the JPEG archive;
    ``cache``: an .npz file that keeps the full decoded set (not used with ``train_limit``)."""
    path = os.path.join(data_dir, ARCHIVE)

    def decode():
        if not os.path.exists(path):
            raise SystemExit(f"cifar_speedrun: no {ARCHIVE} in --data-dir {data_dir!r}. Point --data-dir at the "
                             f"folder holding it (../shared/data here; on the GPU machine copy it into an ignored "
                             f"folder of the checkout, e.g. .data/, and carry it).")
        from cnnjax.data import read_cifar10
        per_class = None if train_limit is None else max(1, math.ceil(train_limit / 10))
        splits = read_cifar10(path, limit_per_class=per_class, progress=False)
        (x_train, y_train), (x_test, y_test) = splits["train"], splits["test"]
        if train_limit is not None:
            x_train, y_train = x_train[:train_limit], y_train[:train_limit]
        return x_train, y_train.astype(np.int32), x_test, y_test.astype(np.int32)

    return _common.cached_arrays(cache, decode) if cache and train_limit is None else decode()


def synthetic(n_train=1024, n_test=256, seed=0):
    """Ten classes, each a different constant colour offset on noise: learnable in one epoch."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n_train + n_test).astype(np.int32)
    colours = rng.integers(0, 120, (10, 3))
    x = rng.integers(0, 120, (n_train + n_test, 32, 32, 3)) + colours[y][:, None, None, :]
    x = x.astype(np.uint8)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def machine() -> dict:
    import jax

    device = jax.devices()[0]
    return {"cpu": _common.cpu_name(), "cores": os.cpu_count(), "jax": jax.__version__,
            "backend": jax.default_backend(), "device": getattr(device, "device_kind", str(device)),
            "python": platform.python_version()}


def mean_std(values):
    values = list(values)
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def table(runs, info) -> str:
    lines = [f"{info.get('dataset', 'CIFAR-10')} speedrun recipe through fit, {info['device']} ({info['backend']}), "
             f"jax {info['jax']}; {info['n_train']} train / {info['n_test']} test images, {info['epochs']} epochs, "
             f"dtype {info['dtype']}, loop {info.get('loop', '?')}, TTA {info.get('tta')}",
             "",
             "| seed | test acc | test acc (TTA) | train s | eval s | total s | first epoch s | epoch s |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in runs:
        later = r.get("epoch_seconds")
        lines.append(f"| {r['seed']} | {100 * r['test_acc']:.2f}% | {100 * r['test_acc_tta']:.2f}% | "
                     f"{r['train_seconds']:.3f} | {r['eval_seconds']:.3f} | {r['total_seconds']:.3f} | "
                     f"{r['first_epoch_seconds']:.3f} | {'' if later is None else format(later, '.3f')} |")
    if runs:
        acc, tta, sec, ev, tot = (mean_std(r[k] for r in runs) for k in (
            "test_acc", "test_acc_tta", "train_seconds", "eval_seconds", "total_seconds"))
        lines.append(f"| mean ± std | {100 * acc[0]:.2f} ± {100 * acc[1]:.2f}% | {100 * tta[0]:.2f} ± "
                     f"{100 * tta[1]:.2f}% | {sec[0]:.3f} ± {sec[1]:.3f} | {ev[0]:.3f} ± {ev[1]:.3f} | "
                     f"{tot[0]:.3f} ± {tot[1]:.3f} | | |")
        if info.get("target") is not None:
            key = "test_acc_tta" if info.get("tta") else "test_acc"
            hits = sum(r[key] >= info["target"] for r in runs)
            lines += ["", f"{hits}/{len(runs)} seeds reach {100 * info['target']:.2f}% "
                      f"({'with' if key == 'test_acc_tta' else 'without'} TTA)."]
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    return load_and_run(args, lambda: load_cifar10(args.data_dir, args.train_limit, args.cache), synthetic,
                        dataset="CIFAR-10", script=__file__, argv=argv, target=TARGET, recipe="cifar10_speedrun")


def load_and_run(args, load, make_synthetic, **run_kwargs) -> dict:
    """:func:`run` on ``make_synthetic()`` with ``--quick``, else on ``load()`` (its time printed to stderr)."""
    if args.quick:
        data = make_synthetic()
    else:
        t0 = time.perf_counter()
        data = load()
        print(f"read {len(data[0])} train / {len(data[2])} test images in {time.perf_counter() - t0:.1f} s",
              file=sys.stderr)
    return run(args, data, **run_kwargs)


def tta_of(level: int, flip: bool):
    """``--tta-level`` as evaluate's ``tta``: 0 None, 1 "flip", 2 "flip_translate"; without flips no mirror
    views (1: None, 2: "translate")."""
    if level == 0:
        return None
    if level == 1:
        return "flip" if flip else None
    return "flip_translate" if flip else "translate"


def run(args, data, *, dataset: str, script: str, argv=None, recipe: str = "cifar10_speedrun",
        target=None) -> dict:
    """Trains one run per ``args.seeds`` on ``data = (x_train, y_train, x_test, y_test)`` with the recipe
    ``recipe`` (a function name of cnnjax.train.recipes) and the options given; prints the table and writes the
    JSON (``args.out``). Shared with mnist_speedrun.py."""
    from cnnjax.train import recipes

    make_recipe = getattr(recipes, recipe)
    x_train, y_train, x_test, y_test = data
    overrides = {}
    if args.quick:
        overrides.update(epochs=1, batch_size=256, widths=(8, 16, 16))
    for name in ("epochs", "batch_size"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.widths is not None:
        overrides["widths"] = tuple(args.widths)
    overrides.update(_settings(args.set))
    if args.tta_level is not None:
        default_flip = recipes.MNIST["flip"] if recipe == "mnist_speedrun" else recipes.SpeedrunSettings().flip
        overrides["tta"] = tta_of(args.tta_level, overrides.get("flip", default_flip))
    t0 = time.perf_counter()
    try:
        the_recipe = make_recipe(x_train, dtype=args.dtype, **overrides)
    except (TypeError, ValueError) as err:
        raise SystemExit(f"{os.path.basename(script)}: {err}")
    recipe_seconds = time.perf_counter() - t0
    fit_options = dict(loop=args.loop, keep_freed_memory=True)
    if args.eval_each_epoch:
        fit_options["validation_data"] = (x_test, y_test)

    for i in range(args.warmup):
        recipes.run_recipe(the_recipe, (x_train, y_train), (x_test, y_test), seed=10_000 + i, **fit_options)
    command = "python " + " ".join([os.path.relpath(script)] + list(sys.argv[1:] if argv is None else argv))

    def summarise(runs) -> dict:
        info = dict(machine(), dataset=dataset, recipe=recipe, n_train=len(x_train), n_test=len(x_test),
                    epochs=the_recipe.epochs, dtype=args.dtype, tta=the_recipe.tta, loop=args.loop,
                    recipe_seconds=recipe_seconds, quick=args.quick, target=target, command=command)
        summary = {"info": info, "runs": runs, "markdown": table(runs, info)}
        for key in ("test_acc", "test_acc_tta", "train_seconds", "eval_seconds", "total_seconds",
                    "epoch_seconds"):
            summary[f"{key}_mean"], summary[f"{key}_std"] = mean_std(r[key] for r in runs
                                                                     if r.get(key) is not None)
        if args.out:        # rewritten whole after every seed: a run cut short keeps the seeds it finished
            _common.write_whole(args.out, json.dumps(summary, indent=1, default=str))
        return summary

    runs = []
    for seed in args.seeds:
        cpu0 = time.process_time()
        result = recipes.run_recipe(the_recipe, (x_train, y_train), (x_test, y_test), seed=seed,
                                    progress=args.progress, **fit_options)
        result["process_cpu_seconds"] = time.process_time() - cpu0     # all threads: training and both evaluations
        result.pop("state")
        history = result.pop("history")
        seconds = history.get("seconds", [])
        result.update(total_seconds=result["train_seconds"] + result["eval_seconds"],
                      first_epoch_seconds=seconds[0] if seconds else None,
                      epoch_seconds=statistics.fmean(seconds[1:]) if len(seconds) > 1 else None,
                      per_epoch=[{k: history[k][e] for k in history if not k.endswith("_members")}
                                 for e in range(len(seconds))],
                      loop=args.loop, backend=machine()["backend"],
                      config=dict(result.pop("settings"), trainer="fit"))
        runs.append(result)
        print(f"seed {seed}: test acc {100 * result['test_acc']:.2f}%, with TTA {100 * result['test_acc_tta']:.2f}%"
              f", train {result['train_seconds']:.3f} s + eval {result['eval_seconds']:.3f} s = "
              f"{result['total_seconds']:.3f} s (first epoch {result['first_epoch_seconds']:.1f} s)",
              file=sys.stderr, flush=True)
        summarise(runs)
    summary = summarise(runs)
    print(summary["markdown"])
    return summary


if __name__ == "__main__":
    main()
