"""experiments/cifar_seeds.py: pooling cifar_speedrun.py JSON files and Welch's test against the anchors."""
import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import cifar_seeds  # noqa: E402

CONFIG = {"epochs": 9.9, "batch_size": 1024, "lr": 11.5, "end_factor": 0.07, "dtype": "bfloat16"}


def write(path, runs, *, quick=False, device="cpu-x"):
    info = {"backend": "cpu", "device": device, "n_train": 50000, "n_test": 10000, "quick": quick}
    path.write_text(json.dumps({"info": info, "runs": runs}))
    return str(path)


def run(seed, plain, tta, **config):
    return {"seed": seed, "test_acc": plain, "test_acc_tta": tta, "backend": "cpu", "config": dict(CONFIG, **config)}


def test_groups_by_config_and_summarises_by_hand(tmp_path):
    a = write(tmp_path / "a.json", [run(0, 0.899, 0.905), run(1, 0.897, 0.907)])
    b = write(tmp_path / "b.json", [run(2, 0.898, 0.903)])
    c = write(tmp_path / "c.json", [run(0, 0.901, 0.904, dtype="float16")])
    groups = cifar_seeds.group(cifar_seeds.read_runs([a, b, c]))
    assert [label for label, _ in groups] == ["dtype=bfloat16", "dtype=float16"]
    assert [r["seed"] for r in groups[0][1]] == [0, 1, 2]
    row = cifar_seeds.summarise(*groups[0], {"x": (4, 90.6, 0.1)})
    assert row["tta_mean"] == pytest.approx(90.5)                       # (90.5 + 90.7 + 90.3) / 3
    assert row["tta_std"] == pytest.approx(0.2)                         # deviations +0, +0.2, -0.2
    assert row["tta_se"] == pytest.approx(0.2 / math.sqrt(3))
    assert row["test_acc_mean"] == pytest.approx(89.8)
    assert row["vs"]["x"]["diff"] == pytest.approx(-0.1)
    assert row["vs"]["x"]["reached"] == 1                               # only 90.7 >= 90.6


def test_welch_matches_the_textbook_case():
    # Equal sizes and spreads: df = 2 (n - 1) = 10, and t = 2.228 is the two-sided 5% point of Student's t(10).
    n, sd = 6, 0.3
    diff = 2.228 * sd * math.sqrt(2 / n)
    t, df, p = cifar_seeds.welch(90.0 + diff, sd, n, 90.0, sd, n)
    assert t == pytest.approx(2.228) and df == pytest.approx(10.0)
    pytest.importorskip("scipy")
    assert p == pytest.approx(0.05, abs=2e-4)
    assert cifar_seeds.welch(90.0, sd, n, 90.0, sd, n)[2] == pytest.approx(1.0)
    assert cifar_seeds.welch(90.0, 0.1, 1, 90.0, sd, n)[2] is None      # one run: no spread to test with


def test_welch_with_unequal_sides_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    t, df, p = cifar_seeds.welch(90.54, 0.18, 5, 90.66, 0.163, 25)
    ref = stats.ttest_ind_from_stats(90.54, 0.18, 5, 90.66, 0.163, 25, equal_var=False)
    assert t == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)
    # Welch-Satterthwaite by hand: (0.18^2/5 + 0.163^2/25)^2 / ((0.18^2/5)^2/4 + (0.163^2/25)^2/24)
    v1, v2 = 0.18 ** 2 / 5, 0.163 ** 2 / 25
    assert df == pytest.approx((v1 + v2) ** 2 / (v1 ** 2 / 4 + v2 ** 2 / 24))


def test_anchor_spread_is_converted_from_population_to_sample(tmp_path):
    f = write(tmp_path / "a.json", [run(0, 0.9, 0.905), run(1, 0.9, 0.907)])
    [(label, members)] = cifar_seeds.group(cifar_seeds.read_runs([f]))
    assert label == "all"
    row = cifar_seeds.summarise(label, members, {"x": (2, 90.0, 0.1)})
    # Ours: 90.5 and 90.7, sample sd 0.1 * sqrt(2). The anchor's population sd 0.1 over 2 runs is a sample sd
    # of 0.1 * sqrt(2) too, so t = 0.6 / sqrt(0.02 / 2 + 0.02 / 2) (with the unconverted 0.1 it would be 4.90).
    expected_t = 0.6 / math.sqrt(0.02)
    assert row["vs"]["x"]["t"] == pytest.approx(expected_t)


def test_missing_fields_stay_apart_but_added_fields_do_not(tmp_path):
    old = {k: v for k, v in CONFIG.items() if k != "end_factor"}      # before end_factor was recorded
    new = dict(CONFIG, loss_scale=0.0)                                  # loss_scale 0: what older runs did
    f = write(tmp_path / "a.json", [{"seed": 0, "test_acc": 0.9, "test_acc_tta": 0.91, "config": old},
                                    run(1, 0.9, 0.905), {"seed": 2, "test_acc": 0.9, "test_acc_tta": 0.9,
                                                         "config": new}])
    groups = cifar_seeds.group(cifar_seeds.read_runs([f]))
    assert [(label, [r["seed"] for r in m]) for label, m in groups] == [
        ("all (not recorded: end_factor)", [0]), ("all", [1, 2])]


def test_duplicate_seed_is_an_error_unless_pooled_over_a_field(tmp_path):
    a = write(tmp_path / "a.json", [run(0, 0.9, 0.905)])
    b = write(tmp_path / "b.json", [run(0, 0.9, 0.907)])
    with pytest.raises(SystemExit, match="seed 0 of one configuration appears twice"):
        cifar_seeds.group(cifar_seeds.read_runs([a, b]))
    c = write(tmp_path / "c.json", [run(0, 0.9, 0.907, dtype="float16")])
    [(label, members)] = cifar_seeds.group(cifar_seeds.read_runs([a, c]), ignore={"dtype"})
    assert label == "all" and len(members) == 2


def test_main_skips_quick_files_and_writes_markdown_and_json(tmp_path, capsys):
    a = write(tmp_path / "a.json", [run(0, 0.899, 0.905), run(1, 0.897, 0.907)])
    q = write(tmp_path / "q.json", [run(5, 0.1, 0.1)], quick=True)
    out = tmp_path / "rows.json"
    assert cifar_seeds.main([a, q, "--anchor", "ref=25:90.66:0.16", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| all | 2 | 0 1 | 89.80 ± 0.14% | 90.60 ± 0.14% |" in text
    assert "vs ref (90.66%, 25 runs)" in text
    rows = json.loads(out.read_text())["rows"]
    assert [r["seeds"] for r in rows] == [[0, 1]]
    with pytest.raises(SystemExit, match="only --quick"):
        cifar_seeds.main([q])
    with pytest.raises(SystemExit):
        cifar_seeds.main([a, "--anchor", "ref=25:90.66"])
    with pytest.raises(SystemExit, match="--ignore 'dtyp' is not a config field"):
        cifar_seeds.main([a, "--ignore", "dtyp"])
    single = write(tmp_path / "one.json", [run(0, 0.9, 0.905)])
    assert cifar_seeds.main([single, "--out", str(out)]) == 0          # n = 1: no spread; strict JSON
    row = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))["rows"][0]
    assert row["tta_std"] is None and row["vs"]["airbench94"]["t"] is None


def test_total_seconds_mean_only_when_every_run_has_it(tmp_path):
    timed = [dict(run(0, 0.9, 0.905), total_seconds=2.0), dict(run(1, 0.9, 0.907), total_seconds=3.0)]
    [(label, members)] = cifar_seeds.group(cifar_seeds.read_runs([write(tmp_path / "a.json", timed)]))
    assert cifar_seeds.summarise(label, members, {})["total_seconds_mean"] == pytest.approx(2.5)
    mixed = [timed[0], run(1, 0.9, 0.907)]                              # one file from before the field
    [(label, members)] = cifar_seeds.group(cifar_seeds.read_runs([write(tmp_path / "b.json", mixed)]))
    assert cifar_seeds.summarise(label, members, {})["total_seconds_mean"] is None


def test_groups_that_share_seeds_are_compared_pair_by_pair(tmp_path, capsys):
    # seeds 0, 1, 2 in both; B is A + 0.1, + 0.3, + 0.2 points: differences -0.1, -0.3, -0.2 (mean -0.2, sd 0.1)
    a = write(tmp_path / "a.json", [run(0, 0.89, 0.905), run(1, 0.89, 0.901), run(2, 0.89, 0.903), run(3, 0.89, 0.9)])
    b = write(tmp_path / "b.json", [run(s, 0.89, t, whiten_sample="spread")
                                    for s, t in ((0, 0.906), (1, 0.904), (2, 0.905))])
    (pair,) = cifar_seeds.paired(cifar_seeds.group(cifar_seeds.read_runs([a, b])))
    assert pair["seeds"] == [0, 1, 2] and pair["df"] == 2
    assert pair["diff_mean"] == pytest.approx(-0.2) and pair["diff_se"] == pytest.approx(0.1 / math.sqrt(3))
    assert pair["t"] == pytest.approx(-0.2 / (0.1 / math.sqrt(3)))
    cifar_seeds.main([a, b])
    assert "| whiten_sample=first | whiten_sample=spread | 0 1 2 | -0.20 |" in capsys.readouterr().out
    c = write(tmp_path / "c.json", [run(7, 0.89, 0.9, whiten_sample="spread")])
    assert cifar_seeds.paired(cifar_seeds.group(cifar_seeds.read_runs([a, c]))) == []     # no shared seeds
