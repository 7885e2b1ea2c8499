"""cnnjax.sampling.spread_indices: rows spread evenly over a set, by formula and by property."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cnnjax.sampling import spread_indices


def test_by_hand():
    assert spread_indices(10, 5).tolist() == [0, 2, 4, 6, 8]
    assert spread_indices(10, 3).tolist() == [0, 3, 6]             # 10 / 3 = 3.33: floor(i * 10 / 3)
    assert spread_indices(7, 7).tolist() == list(range(7))
    assert spread_indices(4, 9).tolist() == [0, 1, 2, 3]           # fewer rows than asked for: all of them
    assert spread_indices(0, 3).tolist() == []


@settings(max_examples=300, deadline=None)
@given(classes=st.integers(1, 12), per_class=st.integers(1, 60), count=st.integers(1, 800))
def test_every_class_of_a_sorted_set_in_proportion(classes, per_class, count):
    n = classes * per_class
    idx = spread_indices(n, count)
    assert len(idx) == min(count, n) and idx[0] == 0
    assert np.all(np.diff(idx) > 0) and idx[-1] < n                 # increasing, no repeats, in range
    got = np.bincount(idx // per_class, minlength=classes)           # rows sorted by class, equal classes
    assert got.max() - got.min() <= 1, got


@pytest.mark.parametrize("n, count, error, message", [
    (-1, 3, ValueError, "n must be an int >= 0, got -1"), (10, 0, ValueError, "count must be an int >= 1, got 0"),
    (10, 2.5, TypeError, "count must be an int >= 1, got 2.5"), (True, 3, TypeError, "n must be an int >= 0, got True"),
    (10, "5", TypeError, "count must be an int >= 1, got '5'")])
def test_bad_arguments_are_named(n, count, error, message):
    with pytest.raises(error, match=f"^spread_indices: {message}\\.$"):
        spread_indices(n, count)
