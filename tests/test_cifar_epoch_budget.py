"""experiments/cifar_epoch_budget.py: the epochs of the CIFAR-10 recipe that fit in airbench94's time."""
import json
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import cifar_epoch_budget as budget  # noqa: E402


def estimate(epochs, train_s, eval_s, e):
    return eval_s + train_s * e / epochs


def test_fills_the_time_worked_by_hand():
    # 0.97 * 2.34 = 2.2698 s; 0.3 s of it evaluates, 1.9698 s trains: 9.9 * 1.9698 / 1.5 = 13.0007 epochs.
    epochs, why = budget.budget_epochs(9.9, 1.5, 0.3, 2.34)
    assert epochs == pytest.approx(13.0)
    assert "13" in why and "2.340" in why
    assert budget.budget_epochs(9.9, 1.75, 0.3, 2.34, min_gain=0.5, step=0.1)[0] == pytest.approx(11.1)  # 11.14
    # fit's whole epochs (the default step): 11 s over 11 epochs, 0.3 s eval, 20 s budget: 11 * 19.4 / 11 = 19.4
    assert budget.budget_epochs(11, 11.0, 0.3, 20 / 0.97, most=30)[0] == 19


def test_never_more_than_most():
    assert budget.budget_epochs(9.9, 1.0, 0.3, 2.34)[0] == 14.0          # 19.5 would fit
    assert budget.budget_epochs(9.9, 1.0, 0.3, 2.34, most=12.5)[0] == 12.5


@pytest.mark.parametrize("train_s, eval_s", [(2.0, 0.3),      # 9.75 epochs fit: fewer than the default's
                                             (1.0, 2.5)])     # the evaluation alone is over the time
def test_falls_back_when_no_time_is_spare(train_s, eval_s):
    epochs, why = budget.budget_epochs(9.9, train_s, eval_s, 2.34)
    assert epochs == 11.0 and "no time to spare" in why


def test_min_gain_decides_the_fallback():
    # 9.9 * 1.9698 / 1.9 = 10.26 epochs fit: 0.36 more than the default.
    assert budget.budget_epochs(9.9, 1.9, 0.3, 2.34, min_gain=0.5, step=0.1)[0] == 11.0
    assert budget.budget_epochs(9.9, 1.9, 0.3, 2.34, min_gain=0.25, step=0.1)[0] == pytest.approx(10.2)


@settings(max_examples=200, deadline=None)
@given(train_s=st.floats(0.2, 5.0), eval_s=st.floats(0.0, 1.0), anchor_s=st.floats(0.5, 5.0))
def test_the_chosen_epochs_fit_and_one_tenth_more_would_not(train_s, eval_s, anchor_s):
    epochs, _ = budget.budget_epochs(9.9, train_s, eval_s, anchor_s, fallback=-1.0, min_gain=0.5, step=0.1)
    if epochs == -1.0:                     # fell back: not even 10.4 epochs fit
        assert estimate(9.9, train_s, eval_s, 10.4) > 0.97 * anchor_s - 1e-9
        return
    assert 10.4 - 1e-9 <= epochs <= 14.0
    assert estimate(9.9, train_s, eval_s, epochs) <= 0.97 * anchor_s + 1e-9
    if epochs < 14.0:
        assert estimate(9.9, train_s, eval_s, epochs + 0.1) > 0.97 * anchor_s - 1e-9


@pytest.mark.parametrize("bad", [dict(train_s=0.0), dict(anchor_s=-1.0), dict(epochs=0.0), dict(eval_s=-0.1),
                                 dict(step=0.0)])
def test_bad_figures_are_named(bad):
    kwargs = {**dict(epochs=9.9, train_s=1.5, eval_s=0.3, anchor_s=2.34), **bad}
    with pytest.raises(ValueError, match=list(bad)[0]):
        budget.budget_epochs(**kwargs)


def test_command_line_reads_both_files_and_falls_back_without_them(tmp_path, capsys):
    ours = tmp_path / "cifar_speedrun.json"
    ours.write_text(json.dumps({"info": {"epochs": 9.9}, "train_seconds_mean": 1.5, "eval_seconds_mean": 0.3}))
    theirs = tmp_path / "airbench94.json"
    theirs.write_text(json.dumps({"runs": 5, "time_mean_excl_run0": 2.34}))   # runs 1-5; the mean of 2-5
    assert budget.main([str(ours), str(theirs)]) == pytest.approx(13.0)
    assert capsys.readouterr().out.strip() == "13"
    # 3b skipped (no JSON written), or a file without the figure: the fallback, with the reason on stderr.
    assert budget.main([str(ours), str(tmp_path / "missing.json")]) == 11.0
    out = capsys.readouterr()
    assert out.out.strip() == "11" and "cannot read" in out.err
    theirs.write_text(json.dumps({"runs": 1}))
    assert budget.main([str(ours), str(theirs), "--fallback", "10"]) == 10
    assert "time_mean_excl_run0" in capsys.readouterr().err
