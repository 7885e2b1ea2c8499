"""fit's loop forms: loop="auto" takes a fixed rule (the same bits on every run), loop="measure" and
measure_step_and_scan time the forms, the probe leaves the state alone, the choice survives a resume, and chunked
scans compute exactly what per-step training computes."""
import time

import jax
import numpy as np
import optax
import pytest

from cnnjax.train import fit
from cnnjax.train.cpu_speed import loop_choice
from cnnjax.train.checkpoint import Checkpointer
from cnnjax.train.parallel import make_strategy
from cnnjax.train.state import create_state
from test_parallel_worker import TinyCNN, toy_data


@pytest.mark.parametrize("steps, expected", [(5, 5), (100, 100), (468, 78), (390, 78), (1000, 100),
                                             (101, 100), (202, 100), (240, 80)])
def test_chunk_steps_is_the_largest_divisor_up_to_100(steps, expected):
    # 468 = 6 * 78 (MNIST at batch 128), 390 = 5 * 78 (CIFAR-10 at 128); 101 and 202 = 2 * 101 have no divisor
    # in [20, 100], so chunks of 100 and one shorter chunk.
    assert loop_choice.chunk_steps(steps) == expected
    assert loop_choice.chunk_steps(steps) <= 100


@pytest.mark.parametrize("steps, expected", [(468, 6), (390, 6), (8, 8), (100, 5), (101, 8), (7, 7), (44, 4)])
def test_unroll_steps_is_a_short_divisor(steps, expected):
    # 468 = 78 * 6, 390 = 65 * 6; 101 is prime (chunks of 8 and a shorter last one); 44 = 11 * 4
    assert loop_choice.unroll_steps(steps) == expected


def test_choose_among_three_forms():
    assert loop_choice.choose({"step": 1000.0, "scan": 150.0, "unroll": 1300.0}) == "unroll"
    assert loop_choice.choose({"step": 1000.0, "scan": 150.0, "unroll": 1040.0}) == "step"      # tie -> step
    assert loop_choice.choose({"step": 1000.0, "scan": 2000.0, "unroll": 2050.0}) == "scan"     # tie -> scan
    assert loop_choice.choose({"step": 1000.0, "scan": 2000.0, "unroll": 2200.0}) == "unroll"


def test_choose_prefers_step_unless_scan_is_clearly_faster():
    assert loop_choice.choose({"step": 1000.0, "scan": 1040.0}) == "step"
    assert loop_choice.choose({"step": 1000.0, "scan": 1100.0}) == "scan"
    assert loop_choice.choose({"step": 1000.0, "scan": 150.0}) == "step"


class _Slowed:
    """A strategy whose chunk (or step) sleeps, so the measurement has a known winner."""

    def __init__(self, strategy, slow):
        self._s, self._slow = strategy, slow

    def __getattr__(self, name):
        return getattr(self._s, name)

    def train_step(self, state, images, labels):
        if "step" in self._slow.split():
            time.sleep(0.05)
        return self._s.train_step(state, images, labels)

    def train_chunk(self, state, images, labels):
        if "scan" in self._slow.split():
            time.sleep(0.05 * images.shape[0])
        return self._s.train_chunk(state, images, labels)


@pytest.mark.parametrize("slow, expected", [("scan", "step"), ("step", "scan"), ("step scan", "unroll")])
def test_measure_loops_finds_the_faster_form_and_leaves_the_state_alone(slow, expected):
    model, tx = TinyCNN(), optax.adam(1e-2)
    x, y = toy_data(96)
    strategy = _Slowed(make_strategy("none", model, tx), slow)
    placed = strategy.place_state(create_state(model, tx, input_shape=(8, 8, 1), key=jax.random.PRNGKey(0)))
    before = jax.tree.map(np.asarray, placed)
    measured = loop_choice.measure_loops(strategy, placed, lambda i: (x[16 * i:16 * (i + 1)], y[16 * i:16 * (i + 1)]),
                                         batch_size=16, unroll=3 if slow == "step scan" else None, scan=5)
    assert loop_choice.choose(measured) == expected
    assert measured["scan_steps"] == loop_choice.SCAN_PROBE_STEPS     # a scan that wins or clearly loses: not re-timed
    assert measured["step"] > 0 and measured["scan"] > 0 and measured["seconds"] > 0
    after = jax.tree.map(np.asarray, placed)                   # the real state is neither donated nor advanced
    jax.tree.map(np.testing.assert_array_equal, before, after)


@pytest.mark.parametrize("loop", ["scan", pytest.param("unroll", marks=pytest.mark.long)])
def test_chunked_loops_equal_per_step_training(tmp_path, loop):
    # 10 steps an epoch: one scan chunk of 10, or unrolled chunks of 5; checkpoint_every=3 cuts the epochs into
    # shorter chunks (scan 3+3+3+1 and 2+3+3+2; each unrolled length compiles its own program): where the chunks
    # end must not change the result.
    x, y = toy_data(160)
    kw = dict(optimizer="adam", learning_rate=1e-2, epochs=2, batch_size=16, progress=False, seed=4)
    s_step, h_step = fit(TinyCNN(dropout=0.2), (x, y), loop="step", **kw)
    s_chunk, h_chunk = fit(TinyCNN(dropout=0.2), (x, y), loop=loop, checkpoint_dir=str(tmp_path),
                           checkpoint_every=3, **kw)
    assert (loop_choice.chunk_steps(10), loop_choice.unroll_steps(10)) == (10, 5)
    np.testing.assert_allclose(h_chunk["loss"], h_step["loss"], rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), s_step.params,
                 s_chunk.params)


def test_auto_takes_the_rule_and_two_runs_give_the_same_bits(capsys):
    """Two default fit runs with one seed: the same loop form (the rule's, printed) and bit-identical weights."""
    x, y = toy_data(160)
    kw = dict(optimizer="adam", learning_rate=1e-2, batch_size=16, seed=3, epochs=1)
    first, _ = fit(TinyCNN(), (x, y), **kw)
    out = capsys.readouterr().out
    assert "fit: loop='auto' takes" in out and "XLA convolution" in out
    second, _ = fit(TinyCNN(), (x, y), progress=False, **kw)
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(second)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.long   # outside README's test command (CI's 8 minutes); `pytest -m long` runs it
def test_measure_prints_its_measurement_and_a_resumed_run_keeps_the_choice(tmp_path, capsys):
    x, y = toy_data(160)
    kw = dict(optimizer="adam", learning_rate=1e-2, batch_size=16, seed=1, checkpoint_dir=str(tmp_path))
    fit(TinyCNN(), (x, y), epochs=1, loop="measure", **kw)
    out = capsys.readouterr().out
    assert "fit: loop='measure' measured" in out and "-step scan" in out
    chosen = next(f for f in loop_choice.FORMS if f"using {f!r}" in out)
    ckpt = Checkpointer(str(tmp_path))
    assert ckpt.read_meta()["loop"] == chosen
    ckpt.close()
    fit(TinyCNN(), (x, y), epochs=2, loop="measure", resume=True, **kw)
    assert "measured" not in capsys.readouterr().out            # no second measurement on resume


def test_a_clearly_slow_chunk_form_is_called_once(monkeypatch):
    """A chunk form whose warm-up call (less the compile allowance) is already 3x slower than per-step training
    is not called again: the probe of a pathological scan costs one call, not two."""
    monkeypatch.setattr(loop_choice, "COMPILE_ALLOWANCE_S", 0.0)
    model, tx = TinyCNN(), optax.adam(1e-2)
    x, y = toy_data(96)
    calls = []

    class Counting(_Slowed):
        def train_chunk(self, state, images, labels):
            calls.append(images.shape[0])
            time.sleep(0.3 * images.shape[0])                   # far slower than a TinyCNN step
            return self._s.train_chunk(state, images, labels)

    strategy = Counting(make_strategy("none", model, tx), "")
    placed = strategy.place_state(create_state(model, tx, input_shape=(8, 8, 1), key=jax.random.PRNGKey(0)))
    measured = loop_choice.measure_loops(strategy, placed, lambda i: (x[16 * i:16 * (i + 1)], y[16 * i:16 * (i + 1)]),
                                         batch_size=16, scan=5)
    assert calls == [loop_choice.SCAN_PROBE_STEPS]              # nor timed again at the run's length
    assert loop_choice.choose(measured) == "step" and measured["scan"] < measured["step"] / 3
    assert measured["scan_steps"] == loop_choice.SCAN_PROBE_STEPS


class _Clock:
    """Stands in for loop_choice's `time`: `perf_counter` moves only by the costs that _CountingScan adds, so
    which form wins does not depend on how loaded the machine is."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


class _CountingScan(_Slowed):
    """Each step costs 20 ms, each scan call a fixed 50 ms (a per-call cost: a 2-step scan loses to per-step
    training by 1.25x, a 7-step one wins), on the clock `clock`; records the length of every scan call."""

    def __init__(self, strategy, calls, clock):
        super().__init__(strategy, "")
        self.calls, self.clock = calls, clock

    def train_step(self, state, images, labels):
        self.clock.now += 0.02
        return self._s.train_step(state, images, labels)

    def train_chunk(self, state, images, labels):
        self.calls.append(images.shape[0])
        self.clock.now += 0.05
        return self._s.train_chunk(state, images, labels)


def _counting_setup(monkeypatch, n):
    clock, calls = _Clock(), []
    monkeypatch.setattr(loop_choice, "time", clock)
    model, tx = TinyCNN(), optax.adam(1e-2)
    strategy = _CountingScan(make_strategy("none", model, tx), calls, clock)
    placed = strategy.place_state(create_state(model, tx, input_shape=(8, 8, 1), key=jax.random.PRNGKey(0)))
    x, y = toy_data(n)
    return strategy, placed, calls, x, y


@pytest.mark.long   # outside README's test command (CI's 8 minutes); `pytest -m long` runs it
def test_a_contending_scan_is_timed_again_at_the_run_length(monkeypatch):
    """The 2-step scan pays its per-call cost over two steps; where it loses narrowly, the figure that decides is
    that of a scan as long as the run's (warm-up call + timed call), on distinct real batches."""
    strategy, placed, calls, x, y = _counting_setup(monkeypatch, 112)     # 7 batches: an epoch of one scan
    seen = []

    def batches(i):
        seen.append(i)
        return x[16 * i:16 * (i + 1)], y[16 * i:16 * (i + 1)]

    measured = loop_choice.measure_loops(strategy, placed, batches, batch_size=16, scan=7)
    k = loop_choice.SCAN_PROBE_STEPS
    assert calls == [k, k, 7, 7]
    assert measured["scan_steps"] == 7 and loop_choice.choose(measured) == "scan"
    assert measured["scan"] == pytest.approx(16 * 7 / 0.05)
    assert sorted(set(seen)) == list(range(7))                  # the long scan: batches 0..6, 7 distinct ones
    calls.clear()                                               # without the run's length: the short figure decides
    measured = loop_choice.measure_loops(strategy, placed, batches, batch_size=16)
    assert calls == [k, k] and measured["scan_steps"] == k and loop_choice.choose(measured) == "step"


def test_the_long_scan_is_skipped_when_one_call_would_take_too_long(monkeypatch):
    monkeypatch.setattr(loop_choice, "LONG_SCAN_SECONDS", 0.1)    # 7 steps at the step's 800 img/s: 0.14 s
    strategy, placed, calls, x, y = _counting_setup(monkeypatch, 160)
    measured = loop_choice.measure_loops(strategy, placed, lambda i: (x[16 * i:16 * (i + 1)], y[16 * i:16 * (i + 1)]),
                                         batch_size=16, scan=7)
    k = loop_choice.SCAN_PROBE_STEPS
    assert measured["step"] == pytest.approx(16 / 0.02)
    assert measured["step"] / loop_choice.SCAN_CONTENDS <= measured["scan"] < measured["step"]   # it contended
    assert calls == [k, k] and measured["scan_steps"] == k


def _fake_forms(step_s, scan_step_s):
    """run_steps/scan_of for measure_step_and_scan whose steps sleep: per step `step_s`, per scanned step
    `scan_step_s`; `log` records each call (("step", k), ("compile", k), ("scan", k))."""
    log = []

    def run_steps(k):
        log.append(("step", k))
        time.sleep(step_s * k)
        return np.zeros(())

    def scan_of(k):
        log.append(("compile", k))

        def run():
            log.append(("scan", k))
            time.sleep(scan_step_s * k)
            return np.zeros(())
        return run

    return run_steps, scan_of, log


@pytest.mark.parametrize("step_s, scan_step_s, expected", [(0.02, 0.005, "scan"), (0.01, 0.04, "step")])
def test_measure_step_and_scan_times_both_and_choose_keeps_the_faster(step_s, scan_step_s, expected):
    run_steps, scan_of, log = _fake_forms(step_s, scan_step_s)
    measured = loop_choice.measure_step_and_scan(run_steps, scan_of, images_per_step=100, most_steps=50,
                                                 seconds=0.1)
    k = measured["steps"]
    assert 0.5 * 0.1 / step_s <= k <= 0.1 / step_s + 1                  # about 0.1 s of per-step calls
    assert measured["step"] == pytest.approx(100 / step_s, rel=0.5)       # (sleeps overshoot under load)
    assert measured["scan"] == pytest.approx(100 / scan_step_s, rel=0.5)
    assert loop_choice.choose(measured) == expected
    assert log[:3] == [("step", 1), ("step", k), ("compile", k)]
    # a scan that may win is run twice (its first run may hold one-time costs); a clearly slower one once
    assert log[3:] == ([("scan", k)] * 2 if expected == "scan" else [("scan", k)])


def test_measure_step_and_scan_stays_within_the_epoch():
    run_steps, scan_of, log = _fake_forms(0.001, 0.001)
    measured = loop_choice.measure_step_and_scan(run_steps, scan_of, images_per_step=8, most_steps=5, seconds=1.0)
    assert measured["steps"] == 5 and ("compile", 5) in log      # never more steps than an epoch holds


@pytest.mark.long   # outside README's test command (CI's 8 minutes); `pytest -m long` runs it
def test_fit_times_the_long_scan_on_an_epoch_of_one_chunk(monkeypatch, capsys):
    """fit's probe with the long scan forced (it runs only where the short scan loses narrowly, which depends on
    timing): an epoch of 10 steps is one scan chunk of 10, so the long scan uses every batch of epoch 0."""
    monkeypatch.setattr(loop_choice, "SCAN_CONTENDS", 1e9)
    real_choose = loop_choice.choose
    monkeypatch.setattr(loop_choice, "choose", lambda m: "step" if m.get("scan_steps") == 2 else real_choose(m))
    x, y = toy_data(160)
    fit(TinyCNN(), (x, y), epochs=1, batch_size=16, loop="measure", seed=0, optimizer="adam", learning_rate=1e-2)
    assert "images/s in a 10-step scan" in capsys.readouterr().out
