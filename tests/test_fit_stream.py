"""fit on a stream of batches (cnnjax/train/stream.py): the same batches as the in-memory path give the same
parameters, generators and epoch functions, uneven last batches, kill-and-resume, and the errors."""
import itertools

import jax
import numpy as np
import pytest

from cnnjax import Dense, Flatten, Sequential
from cnnjax.train import epoch_order, fit

N, B = 96, 16


def _model():       # the smallest model: what is tested is the input path, not the layers
    return Sequential([Flatten(), Dense(10)])


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (N, 6, 6, 1), dtype=np.uint8), rng.integers(0, 10, N).astype(np.int32)


def _batches_of(x, y, epoch, seed=0):
    """The batches the in-memory path trains on in `epoch` (fit's documented order), as a list."""
    order = epoch_order(seed, epoch, len(x))
    return [(x[order[i * B:(i + 1) * B]], y[order[i * B:(i + 1) * B]]) for i in range(len(x) // B)]


def _same(a, b):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


KW = dict(optimizer="sgd", learning_rate=0.05, progress=False)


@pytest.mark.parametrize("loop", ["step", "scan"])
def test_epoch_function_stream_equals_in_memory_batches(data, loop):
    x, y = data
    ref, ref_hist = fit(_model(), (x, y), epochs=2, batch_size=B, loop=loop, **KW)
    got, hist = fit(_model(), lambda e: _batches_of(x, y, e), epochs=2, loop=loop, **KW)
    _same(ref.params, got.params)
    assert hist["loss"] == ref_hist["loss"]
    assert int(got.step) == 2 * (N // B)


def test_a_generator_gives_consecutive_epochs(data):
    x, y = data
    both = _batches_of(x, y, 0) + _batches_of(x, y, 1)
    ref, _ = fit(_model(), (x, y), epochs=2, batch_size=B, loop="step", **KW)
    from_generator, _ = fit(_model(), (b for b in both), epochs=2, steps_per_epoch=N // B, loop="step", **KW)
    _same(ref.params, from_generator.params)


def test_dict_batches_and_an_uneven_last_batch(data):
    x, y = data
    batches = [{"image": x[i:i + 40], "label": y[i:i + 40]} for i in range(0, N, 40)]   # 40, 40, 16
    assert [len(b["label"]) for b in batches] == [40, 40, 16]
    state, hist = fit(_model(), batches, epochs=1, loop="step", **KW)
    assert int(state.step) == 3
    # the same three steps by hand: full-batch fit calls with those rows in that order
    by_hand = None
    for b in batches:
        by_hand, _ = fit(_model(), (b["image"], b["label"]), epochs=1, batch_size=len(b["label"]), loop="step",
                         initial_state=by_hand, **KW) if by_hand is not None else \
            fit(_model(), (b["image"], b["label"]), epochs=1, batch_size=len(b["label"]), loop="step", **KW)
    np.testing.assert_allclose(np.asarray(jax.tree.leaves(state.params)[0]),
                               np.asarray(jax.tree.leaves(by_hand.params)[0]), rtol=1e-6, atol=1e-7)


def test_uneven_batch_inside_a_scan_chunk(data):
    x, y = data
    batches = [(x[i:i + 40], y[i:i + 40]) for i in range(0, N, 40)]
    scanned, _ = fit(_model(), batches, epochs=2, loop="scan", **KW)
    stepped, _ = fit(_model(), batches, epochs=2, loop="step", **KW)
    assert int(scanned.step) == int(stepped.step) == 6
    for a, b in zip(jax.tree.leaves(scanned.params), jax.tree.leaves(stepped.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=1e-6)


def test_kill_and_resume_a_stream_run_is_bit_identical(data, tmp_path):
    x, y = data
    source = lambda e: _batches_of(x, y, e)      # noqa: E731
    whole, _ = fit(_model(), source, epochs=3, loop="step", **KW)

    calls = itertools.count()

    class Killed(Exception):
        pass

    def kill_in_epoch_2(e):
        batches = _batches_of(x, y, e)
        if e == 1 and next(calls) == 0:
            def gen():
                yield from batches[:3]
                raise Killed
            return _Sized(gen(), len(batches))
        return batches

    with pytest.raises(Killed):
        fit(_model(), kill_in_epoch_2, epochs=3, loop="step", checkpoint_dir=str(tmp_path), checkpoint_every=2,
            **KW)
    resumed, _ = fit(_model(), source, epochs=3, loop="step", checkpoint_dir=str(tmp_path), checkpoint_every=2,
                     resume=True, **KW)
    _same(whole.params, resumed.params)
    _same(whole.opt_state, resumed.opt_state)


class _Sized:
    def __init__(self, it, n):
        self.it, self.n = it, n

    def __iter__(self):
        return self.it

    def __len__(self):
        return self.n


def test_stream_errors_name_the_problem(data):
    x, y = data
    batches = _batches_of(x, y, 0)
    with pytest.raises(ValueError, match="steps_per_epoch=N"):
        fit(_model(), (b for b in batches), epochs=2, **KW)
    with pytest.raises(ValueError, match="without a length"):
        fit(_model(), _NoLen(batches), epochs=1, **KW)
    with pytest.raises(ValueError, match="gave only 6 batches in epoch 1"):
        fit(_model(), batches, epochs=1, steps_per_epoch=8, **KW)
    with pytest.raises(ValueError, match="batch_size=32, but the stream's first batch has 16"):
        fit(_model(), batches, epochs=1, batch_size=32, **KW)
    with pytest.raises(ValueError, match="validation_split"):
        fit(_model(), batches, epochs=1, validation_split=0.2, **KW)
    with pytest.raises(ValueError, match="steps_per_epoch applies to a stream"):
        fit(_model(), (x, y), epochs=1, batch_size=B, steps_per_epoch=3, **KW)
    bad = batches[:2] + [(x[:B, :4], y[:B])]
    with pytest.raises(ValueError, match=r"batch 2 of data has images of shape \(4, 6, 1\)"):
        fit(_model(), bad, epochs=1, **KW)
    bad = batches[:1] + [(x[:B], y[:B] + 10)]
    with pytest.raises(ValueError, match=r"batch 1 of data labels must be class indices in \[0, 10\)"):
        fit(_model(), bad, epochs=1, **KW)
    bad = batches[:1] + [(x[:B].astype(np.float32), y[:B])]
    with pytest.raises(ValueError, match="batch 1 of data images are float32 with values up to"):
        fit(_model(), bad, epochs=1, **KW)
    with pytest.raises(TypeError, match="batch 0 of data is int"):
        fit(_model(), [1, 2, 3], epochs=1, **KW)
    with pytest.raises(ValueError, match="gave no batch"):
        fit(_model(), [], epochs=1, **KW)


class _NoLen:
    def __init__(self, batches):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)


def test_a_reader_error_reaches_the_caller(data):
    x, y = data

    def broken():
        yield x[:B], y[:B]
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        fit(_model(), broken(), epochs=1, steps_per_epoch=4, **KW)
