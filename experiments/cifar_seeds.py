"""Pool the seeds of several ``cifar_speedrun.py`` JSON files and hold their mean against airbench94's runs.

Each CPU seed of the CIFAR-10 recipe takes ~45 minutes, so the seeds of one configuration end up in several
files, written on different days. This script reads them all, groups the runs by what they ran (backend, device,
and every ``SpeedrunConfig`` field but the seed), and prints one markdown row per group: the seeds, the mean ±
sample standard deviation with and without test-time augmentation, the standard error of the TTA mean, the mean
``total_seconds`` (train + final evaluation, airbench94's clock; a dash where a file predates it), and for
each anchor the difference, Welch's t statistic, its degrees of freedom and the two-sided p-value (p needs
SciPy; without it the column shows a dash).

    python experiments/cifar_seeds.py                                    # every file in experiments/results
    python experiments/cifar_seeds.py --ignore dtype loss_scale          # bfloat16 and float16 seeds pooled
    python experiments/cifar_seeds.py /tmp/gpu/cifar_speedrun*.json      # the GPU run's two sections

The anchors (``--anchor``) default to the two airbench94 measurements on the same JPEG copy and H100 type in
``../shared/anchors/RESULTS.md`` (section C): ``legacy/airbench94.py``, 25 runs, 90.66% ± 0.16 (the issue's
target), and the PyPI package airbench 0.1.8's ``train94``, 8 runs, 90.55% ± 0.17. Their ± is the population
standard deviation (``cifar_airbench.py parse`` uses ``pstdev``; the 8-run figure came from an earlier version of
the anchors' scripts and is taken to be the same kind); the test converts it to the sample one.

Config fields added to the trainer after a file was written are read with the value that reproduces what that
run did (:data:`ADDED_FIELDS`); any other missing field counts as unknown (``?``), so a run from before a
changed default (``end_factor``) stays in a group of its own. Two runs of one seed and one configuration are an
error: pass the files you mean. With ``--ignore`` a group can hold the same seed twice (say in bfloat16 and
float16): those two runs share their initialisation, data order and augmentation, so they are not independent
and the pooled standard error and p understate the uncertainty; pool different seeds where you can.
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import statistics
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
# name -> (runs, mean %, population std %), from ../shared/anchors/RESULTS.md section C.
ANCHORS = {"airbench94": (25, 90.66, 0.16), "airbench94-pypi": (8, 90.55, 0.17)}
# Fields added to SpeedrunConfig after some results were written, with the value that does what those runs did
# (loss_scale 0 = automatic: 1 for float32/bfloat16; the runs without the field were all bfloat16; whiten_sample:
# the runs before it whitened with the first whiten_images training images; trainer: the runs before 2026-12-08
# ran the old trainer, cnnjax.train.speedrun.train_speedrun, the later ones the recipe through fit, "fit").
ADDED_FIELDS = {"loss_scale": 0.0, "whiten_sample": "first", "trainer": "train_speedrun"}
UNKNOWN = "?"


def read_runs(paths):
    """Every run of every file, each a dict with ``file``, ``seed``, ``test_acc``, ``test_acc_tta``, ``backend``,
    ``device`` and ``config``."""
    runs = []
    for path in paths:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as err:
            raise SystemExit(f"cifar_seeds: cannot read {path}: {err}")
        if not isinstance(data, dict) or "runs" not in data:
            raise SystemExit(f"cifar_seeds: {path} is not a cifar_speedrun.py JSON file (no 'runs').")
        info = data.get("info", {})
        if info.get("quick"):
            continue                      # synthetic-data smoke runs: their numbers mean nothing
        for run in data["runs"]:
            config = dict(ADDED_FIELDS, **run.get("config", {}))
            config.pop("seed", None)
            runs.append({"file": str(path), "seed": run["seed"], "test_acc": run["test_acc"],
                         "test_acc_tta": run["test_acc_tta"], "total_seconds": run.get("total_seconds"),
                         "backend": run.get("backend", info.get("backend")),
                         "device": info.get("device", UNKNOWN), "config": config,
                         "n_train": info.get("n_train"), "n_test": info.get("n_test")})
    return runs


def group_key(run, fields, ignore):
    values = [run["backend"], run["device"], run["n_train"], run["n_test"]]
    values += [json.dumps(run["config"].get(f, UNKNOWN)) for f in fields if f not in ignore]
    return tuple(values)


def group(runs, ignore=()):
    """Runs grouped by what they ran: ``[(label, runs)]`` in the order first seen. ``label`` names the fields in
    which the groups' recorded values differ (``dtype=bfloat16``) and the fields this group's files did not record;
    ``all`` when there is one group."""
    fields = sorted(set().union(*(r["config"] for r in runs))) if runs else []
    groups, seen = {}, {}
    for run in runs:
        groups.setdefault(group_key(run, fields, ignore), []).append(run)
        same = (run["seed"],) + group_key(run, fields, ())   # the same seed of the very same configuration
        if same in seen:
            raise SystemExit(f"cifar_seeds: seed {run['seed']} of one configuration appears twice ({seen[same]} and "
                             f"{run['file']}); pass only the files you want pooled.")
        seen[same] = run["file"]
    where = ("backend", "device", "n_train", "n_test")

    def value(members, f):
        return members[0][f] if f in where else members[0]["config"].get(f, UNKNOWN)

    kept = [f for f in where] + [f for f in fields if f not in ignore]
    varying = [f for f in kept
               if len({json.dumps(value(m, f)) for m in groups.values()} - {json.dumps(UNKNOWN)}) > 1]
    labelled = []
    for members in groups.values():
        parts = [f"{f}={value(members, f)}" for f in varying if value(members, f) != UNKNOWN]
        missing = [f for f in fields if f not in ignore and value(members, f) == UNKNOWN]
        label = ", ".join(parts) or "all"
        if missing:
            label += f" (not recorded: {', '.join(missing)})"
        labelled.append((label, sorted(members, key=lambda r: r["seed"])))
    return labelled


def welch(mean1, sd1, n1, mean2, sd2, n2):
    """Welch's t for ``mean1 - mean2`` (sample standard deviations), its degrees of freedom and two-sided p
    (``None`` without SciPy, or with fewer than 2 runs on a side)."""
    v1, v2 = sd1 ** 2 / n1, sd2 ** 2 / n2
    if n1 < 2 or n2 < 2 or v1 + v2 == 0:
        return float("nan"), float("nan"), None
    t = (mean1 - mean2) / math.sqrt(v1 + v2)
    df = (v1 + v2) ** 2 / (v1 ** 2 / (n1 - 1) + v2 ** 2 / (n2 - 1))
    try:
        from scipy import stats
    except ImportError:
        return t, df, None
    return t, df, float(2 * stats.t.sf(abs(t), df))


def _mean_of(members, key):
    values = [r[key] for r in members if r.get(key) is not None]
    return statistics.fmean(values) if len(values) == len(members) else None


def summarise(label, members, anchors):
    tta = [100 * r["test_acc_tta"] for r in members]
    plain = [100 * r["test_acc"] for r in members]
    n = len(tta)
    sd = statistics.stdev(tta) if n > 1 else float("nan")
    row = {"group": label, "n": n, "seeds": [r["seed"] for r in members],
           "test_acc_mean": statistics.fmean(plain), "test_acc_std": statistics.stdev(plain) if n > 1 else None,
           "tta_mean": statistics.fmean(tta), "tta_std": sd if n > 1 else None,
           "tta_se": sd / math.sqrt(n) if n > 1 else None, "total_seconds_mean": _mean_of(members, "total_seconds"),
           "files": sorted({r["file"] for r in members}),
           "vs": {}}
    for name, (runs, mean, pstd) in anchors.items():
        anchor_sd = pstd * math.sqrt(runs / (runs - 1)) if runs > 1 else 0.0
        t, df, p = welch(row["tta_mean"], sd, n, mean, anchor_sd, runs)
        row["vs"][name] = {"diff": row["tta_mean"] - mean, "t": t, "df": df, "p": p,
                           "reached": sum(a >= mean for a in tta)}
    return row


def paired(groups):
    """For every two groups that ran at least two of the same seeds: the per-seed differences of their accuracy
    with TTA (first group minus second, in points), their mean, standard error, t = mean / SE with n - 1 degrees
    of freedom and the two-sided p (None without SciPy). A seed fixes the initialisation, the data order and the
    augmentation, so a paired difference leaves out most of the run-to-run spread that Welch's test carries."""
    out = []
    for i, (label_a, runs_a) in enumerate(groups):
        for label_b, runs_b in groups[i + 1:]:
            a, b = ({r["seed"]: r for r in runs} for runs in (runs_a, runs_b))
            seeds = sorted(set(a) & set(b))
            if len(seeds) < 2:
                continue
            d = [100 * (a[s]["test_acc_tta"] - b[s]["test_acc_tta"]) for s in seeds]
            mean, se = statistics.fmean(d), statistics.stdev(d) / math.sqrt(len(d))
            t = mean / se if se > 0 else float("nan")
            p = None
            if se > 0:
                try:
                    from scipy import stats
                    p = float(2 * stats.t.sf(abs(t), len(d) - 1))
                except ImportError:
                    pass
            out.append({"a": label_a, "b": label_b, "seeds": seeds, "diffs": d, "diff_mean": mean, "diff_se": se,
                        "t": t, "df": len(d) - 1, "p": p})
    return out


def paired_markdown(pairs) -> str:
    if not pairs:
        return ""
    lines = ["Paired by seed (the same initialisation, data order and augmentation), accuracy with TTA:", "",
             "| A | B | seeds | A - B | SE | t (df) | p |", "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for q in pairs:
        lines.append(f"| {q['a']} | {q['b']} | {' '.join(map(str, q['seeds']))} | {q['diff_mean']:+.2f} | "
                     f"{q['diff_se']:.3f} | {_num(q['t'], '.2f')} ({q['df']}) | {_num(q['p'], '.3f')} |")
    return "\n".join(lines)


def _num(x, fmt):
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def markdown(rows, anchors) -> str:
    head = "| runs | n | seeds | test acc | with TTA | SE (TTA) | total s |"
    rule = "| --- | ---: | --- | ---: | ---: | ---: | ---: |"
    for name, (runs, mean, pstd) in anchors.items():
        head += f" vs {name} ({mean:.2f}%, {runs} runs): diff, t (df), p |"
        rule += " ---: |"
    lines = [head, rule]
    for r in rows:
        spread = (lambda m, s: f"{m:.2f} ± {s:.2f}%" if s is not None else f"{m:.2f}%")
        line = (f"| {r['group']} | {r['n']} | {' '.join(map(str, r['seeds']))} | "
                f"{spread(r['test_acc_mean'], r['test_acc_std'])} | {spread(r['tta_mean'], r['tta_std'])} | "
                f"{_num(r['tta_se'], '.3f')} | {_num(r['total_seconds_mean'], ',.3f')} |")
        for name in anchors:
            v = r["vs"][name]
            line += (f" {v['diff']:+.2f}, {_num(v['t'], '.2f')} ({_num(v['df'], '.1f')}), {_num(v['p'], '.3f')};"
                     f" {v['reached']}/{r['n']} seeds reach it |")
        lines.append(line)
    return "\n".join(lines)


def _finite(tree):
    """``tree`` with every NaN (a statistic of one run) as None, so that the JSON is strict."""
    if isinstance(tree, dict):
        return {k: _finite(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_finite(v) for v in tree]
    return None if isinstance(tree, float) and math.isnan(tree) else tree


def parse_anchor(text):
    try:
        name, rest = text.split("=", 1)
        runs, mean, pstd = rest.split(":")
        value = (int(runs), float(mean), float(pstd))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--anchor {text!r}: expected NAME=RUNS:MEAN:PSTD in percent, "
                                         f"e.g. airbench94=25:90.66:0.16")
    if value[0] < 1 or value[2] < 0:
        raise argparse.ArgumentTypeError(f"--anchor {text!r}: RUNS must be >= 1 and PSTD >= 0")
    return name, value


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="*", help=f"cifar_speedrun.py JSON files (default: "
                   f"{RESULTS.name}/cifar_speedrun_*.json beside this script)")
    p.add_argument("--ignore", nargs="+", default=[], metavar="FIELD",
                   help="config fields left out of the grouping, e.g. dtype loss_scale to pool precisions")
    p.add_argument("--anchor", action="append", type=parse_anchor, metavar="NAME=RUNS:MEAN:PSTD",
                   help="an anchor to compare with (percent; repeatable); default: the two airbench94 runs")
    p.add_argument("--out", help="also write the rows as JSON to this file")
    args = p.parse_args(argv)
    files = args.files or sorted(glob.glob(str(RESULTS / "cifar_speedrun_*.json")))
    if not files:
        raise SystemExit("cifar_seeds: no JSON files given and none in experiments/results.")
    anchors = dict(args.anchor) if args.anchor else ANCHORS
    runs = read_runs(files)
    if not runs:
        raise SystemExit("cifar_seeds: the files hold no runs on real data (only --quick ones).")
    known = set().union(*(r["config"] for r in runs))
    unknown = sorted(set(args.ignore) - known)
    if unknown:
        raise SystemExit(f"cifar_seeds: --ignore {unknown[0]!r} is not a config field of these runs; they have "
                         f"{', '.join(sorted(known))}.")
    groups = group(runs, set(args.ignore))
    rows = [summarise(label, members, anchors) for label, members in groups]
    pairs = paired(groups)
    print(markdown(rows, anchors))
    if pairs:
        print("\n" + paired_markdown(pairs))
    if args.out:
        Path(args.out).write_text(json.dumps(_finite({"anchors": anchors, "rows": rows, "paired": pairs}), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
