"""How many epochs of the CIFAR-10 recipe fit in airbench94's time on the same GPU (``gpu_run.sh`` section 3c).

On the CPU the old trainer's recipe at 9.9 epochs (airbench94's) averaged 90.54% with test-time flips over 9 runs
(seeds 0-4 in bfloat16, 0-3 in float16, whitened from the first 5000 images), 0.12 points short of the 90.66%
target, and 90.85% at 11 epochs; more epochs is the lever sure to add accuracy, and it costs time in proportion.
The recipe now runs through ``fit``, whose epochs are whole, so the budget is counted in whole epochs.
So if the default recipe runs well inside airbench94's time on the GPU, the run can spend the difference on
epochs and still be faster. This script reads the two measurements that ``gpu_run.sh`` makes just before:

* section 3's ``cifar_speedrun.py`` JSON: the recipe's mean ``train_seconds`` and ``eval_seconds`` (``fit``'s
  wall time, its compilation in the first epoch included: served by the persistent compilation cache after the
  warm-up run) and its ``epochs``;
* section 3b's ``cifar_airbench.py parse`` JSON: airbench94's ``time_mean_excl_run0`` on the same GPU (its runs
  2-5: the warm-up call prints no result row, so ``parse`` sees runs 1-5 and leaves out run 1);

and prints (stdout) the largest number of epochs, in steps of ``--step`` (1: whole epochs), whose estimated
time, ``eval + train * epochs / default epochs``, is within ``--margin`` of airbench94's. Training time is taken to
grow in proportion to the epochs, which overstates the cost of each added epoch (the compilation in
``train_seconds`` does not grow), so the estimate errs towards fewer epochs. Where that is fewer than
``--min-gain`` epochs more than the default (the recipe has no time to spare), or a file is missing, it prints
``--fallback`` instead: then the row answers only how accuracy grows with epochs, not the time target.
Its reasons go to stderr.

    python experiments/cifar_epoch_budget.py OUT/cifar_speedrun.json OUT/airbench94.json     # -> e.g. 12
"""
from __future__ import annotations

import argparse
import json
import math
import sys


def budget_epochs(epochs: float, train_s: float, eval_s: float, anchor_s: float, *, margin: float = 0.97,
                  most: float = 14.0, min_gain: float = 1.0, fallback: float = 11.0,
                  step: float = 1.0) -> tuple[float, str]:
    """``(epochs to run, why)``: the most epochs (a multiple of ``step``, at most ``most``) whose estimated
    total time ``eval_s + train_s * e / epochs`` is at most ``margin * anchor_s``; ``fallback`` where that is not
    at least ``epochs + min_gain``."""
    for name, value in (("epochs", epochs), ("train_s", train_s), ("anchor_s", anchor_s), ("step", step)):
        if not value > 0:
            raise ValueError(f"budget_epochs: {name} must be > 0, got {value!r}")
    if eval_s < 0:
        raise ValueError(f"budget_epochs: eval_s must be >= 0, got {eval_s!r}")
    spare = margin * anchor_s - eval_s
    fits = math.floor(round(epochs * spare / train_s / step, 6)) * step if spare > 0 else 0.0
    at_default = eval_s + train_s
    if fits < epochs + min_gain:
        return fallback, (f"the default recipe takes {at_default:.3f} s against airbench94's {anchor_s:.3f} s: "
                          f"at most {fits:g} epochs fit in {margin:g}x its time, no time to spare; running "
                          f"{fallback:g} epochs for the accuracy alone")
    chosen = min(fits, most)
    return chosen, (f"the default recipe takes {at_default:.3f} s ({epochs:g} epochs) against airbench94's "
                    f"{anchor_s:.3f} s: {fits:g} epochs fit in {margin:g}x its time; running {chosen:g}")


def _read(path, keys):
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as err:
        return None, f"cannot read {path} ({err.__class__.__name__})"
    values = {}
    for key in keys:
        value = data
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if not isinstance(value, (int, float)):
            return None, f"{path} has no number at {key!r}"
        values[key] = float(value)
    return values, ""


def main(argv=None) -> float:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("speedrun_json", help="section 3's cifar_speedrun.py --out file (the default recipe)")
    p.add_argument("airbench_json", help="section 3b's `cifar_airbench.py parse` output")
    p.add_argument("--margin", type=float, default=0.97, help="fraction of airbench94's time to fill (0.97)")
    p.add_argument("--most", type=float, default=14.0, help="never more epochs than this (14)")
    p.add_argument("--min-gain", type=float, default=1.0,
                   help="below this many added epochs, run --fallback instead (1)")
    p.add_argument("--step", type=float, default=1.0, help="granularity of the epochs (1: fit's whole epochs)")
    p.add_argument("--fallback", type=float, default=11.0, help="epochs to run when nothing fits (11)")
    args = p.parse_args(argv)
    ours, why = _read(args.speedrun_json, ["train_seconds_mean", "eval_seconds_mean", "info.epochs"])
    theirs, why2 = (None, "") if ours is None else _read(args.airbench_json, ["time_mean_excl_run0"])
    if ours is None or theirs is None:
        epochs, reason = args.fallback, f"{why or why2}; running {args.fallback:g} epochs"
    else:
        epochs, reason = budget_epochs(ours["info.epochs"], ours["train_seconds_mean"], ours["eval_seconds_mean"],
                                       theirs["time_mean_excl_run0"], margin=args.margin, most=args.most,
                                       min_gain=args.min_gain, fallback=args.fallback, step=args.step)
    print(f"cifar_epoch_budget: {reason}", file=sys.stderr)
    print(f"{epochs:g}")
    return epochs


if __name__ == "__main__":
    main()
