"""XLA:CPU compile options (cnnjax.train.cpu_speed.compile_options): same numbers, and refused wherever they do not fit."""
import importlib
import os
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnnjax import layers as L
from cnnjax.train.cpu_speed import compile_options as co
from cnnjax.train import create_state, make_strategy, make_train_step

OPTIONS = co.cpu_compiler_options()
needs_options = pytest.mark.skipif(OPTIONS is None, reason=f"not used with this jaxlib: {co._probe()[1]}")


def _model():
    return L.Sequential([L.Conv2D(64, 3, padding="same", activation="relu"), L.MaxPool2D(2),
                         L.Conv2D(64, 3, padding="same", activation="relu"), L.GlobalAveragePooling2D(),
                         L.Dense(10)])


def _batch():
    rng = np.random.RandomState(0)
    return (jnp.asarray(rng.randint(0, 256, (16, 16, 16, 3)).astype(np.uint8)),
            jnp.asarray(rng.randint(0, 10, (16,))))


@pytest.fixture
def fresh_probe(monkeypatch):
    monkeypatch.delenv("CNNJAX_XLA_CPU_OPTIONS", raising=False)
    monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", "").replace(co.FIELD, "unset_by_the_test"))
    co._probe.cache_clear()
    yield monkeypatch
    co._probe.cache_clear()


@needs_options
def test_a_training_step_computes_the_same_with_the_options():
    model, tx = _model(), optax.sgd(0.1, 0.9)
    state = create_state(model, tx, input_shape=(16, 16, 3), key=jax.random.PRNGKey(0))
    x, y = _batch()
    step = make_train_step(model, tx)
    plain, plain_metrics = jax.jit(step)(state, x, y)
    opted, opted_metrics = co.jit(step, platform="cpu")(state, x, y)
    for a, b in zip(jax.tree.leaves(plain.params), jax.tree.leaves(opted.params)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(plain_metrics["loss"], opted_metrics["loss"], rtol=1e-5)


@needs_options
def test_fit_s_cpu_strategy_compiles_with_the_options():
    model, tx = _model(), optax.sgd(0.1)
    state = create_state(model, tx, input_shape=(16, 16, 3), key=jax.random.PRNGKey(0))
    x, y = _batch()
    strategy = make_strategy("none", model, tx)
    ours = strategy.train_step.lower(state, x, y).compile().as_text()
    default = jax.jit(make_train_step(model, tx)).lower(state, x, y).compile().as_text()
    # The convolutions' gradients leave YNNPACK, so the program has fewer YNNPACK fusions than jax.jit's.
    assert len(co._YNN.findall(ours)) < len(co._YNN.findall(default))


@pytest.mark.skipif(jax.__version__ != "0.10.2" or "CNNJAX_XLA_CPU_OPTIONS" in os.environ
                    or co.FIELD in os.environ.get("XLA_FLAGS", ""), reason="measured for jax 0.10.2's defaults")
def test_jax_0_10_2_gets_the_options():
    # The version CI installs: there the probe must accept them (or every test above skips unseen).
    assert OPTIONS == {co.FIELD: co.WITHOUT_CONVOLUTIONS}, co._probe()[1]


def test_a_caller_s_options_win_and_the_cached_ones_stay():
    got = co.cpu_compiler_options()
    if got:
        got["changed"] = 1
    assert co.cpu_compiler_options() == OPTIONS
    f = co.jit(lambda x: x + 1, platform="cpu", compiler_options=None)
    assert int(f(1)) == 2


def test_other_platforms_get_no_options():
    assert co.compiler_options_for("gpu") is None
    assert co.compiler_options_for("tpu") is None


def test_the_environment_switch_turns_them_off(fresh_probe):
    fresh_probe.setenv("CNNJAX_XLA_CPU_OPTIONS", "0")
    assert co._probe() == (None, "CNNJAX_XLA_CPU_OPTIONS=0")


def test_an_option_this_jaxlib_does_not_know_is_not_used(fresh_probe):
    fresh_probe.setattr(co, "WITHOUT_CONVOLUTIONS", "LIBRARY_FUSION_TYPE_NO_SUCH_TYPE")
    with pytest.warns(UserWarning, match="not used"):
        options, why = co._probe()
    assert options is None and "does not take" in why


@needs_options
def test_an_option_that_changes_other_programs_is_not_used(fresh_probe):
    # Matrix products only: the reductions leave YNNPACK too, so the probe without convolutions changes.
    fresh_probe.setattr(co, "WITHOUT_CONVOLUTIONS", "LIBRARY_FUSION_TYPE_DOT")
    options, why = co._probe()
    assert options is None and "without convolutions" in why


def test_xla_flags_that_set_the_fusion_types_win():
    env = dict(os.environ, XLA_FLAGS=f"--{co.FIELD}=reduce")
    out = subprocess.run([sys.executable, "-c", "from cnnjax.train.cpu_speed import compile_options as c; print(c._probe())"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"(None, 'XLA_FLAGS sets {co.FIELD}')" in out.stdout


def test_checkpoints_record_the_options_and_a_resume_with_others_warns(tmp_path, monkeypatch):
    from cnnjax.train import Checkpointer, fit
    rng = np.random.RandomState(1)
    data = (rng.randint(0, 256, (32, 8, 8, 1)).astype(np.uint8), rng.randint(0, 10, 32))
    model = L.Sequential([L.Conv2D(4, 3, activation="relu"), L.Flatten(), L.Dense(10)])
    kw = dict(optimizer="sgd", learning_rate=0.1, batch_size=16, loop="step", progress=False,
              checkpoint_dir=str(tmp_path))
    fit(model, data, epochs=1, **kw)
    ckpt = Checkpointer(str(tmp_path))
    compiled_with = ckpt.read_meta()["compiled_with"]
    assert compiled_with["compiler_options"] == OPTIONS         # what this process's CPU steps compile with
    assert compiled_with["platform"] == "cpu" and compiled_with["parallel"] == "none"
    ckpt.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)             # the same options: no warning
        fit(model, data, epochs=2, resume=True, **kw)
    if OPTIONS is None:
        pytest.skip(f"no options to turn off with this jaxlib: {co._probe()[1]}")
    monkeypatch.setattr(co, "_probe", lambda: (None, "turned off by the test"))
    with pytest.warns(UserWarning, match="need not be bit-for-bit"):
        fit(model, data, epochs=3, resume=True, **kw)


def _compiled_with(**changes):
    return {"jaxlib": "0.10.2", "platform": "cpu", "parallel": "none", "compiler_options": {"a": "b"}, **changes}


def test_a_checkpoint_without_the_record_or_with_the_same_resumes_silently():
    fit_module = importlib.import_module("cnnjax.train.trainer")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_module._check_compiled_with({}, _compiled_with(), "d")                           # older checkpoint
        fit_module._check_compiled_with({"compiled_with": _compiled_with()}, _compiled_with(), "d")
        # None and {} both mean "no options"
        fit_module._check_compiled_with({"compiled_with": _compiled_with(compiler_options={})},
                                        _compiled_with(compiler_options=None), "d")


def test_the_warning_names_what_changed_and_what_to_do():
    fit_module = importlib.import_module("cnnjax.train.trainer")
    saved = {"compiled_with": _compiled_with(jaxlib="0.0.1", parallel="pmap")}
    with pytest.warns(UserWarning, match="need not be bit-for-bit") as record:
        fit_module._check_compiled_with(saved, _compiled_with(), "ckpt-dir")
    text = str(record[0].message)
    assert "ckpt-dir" in text and "jaxlib '0.0.1' then, '0.10.2' now" in text
    assert "parallel 'pmap' then, 'none' now" in text and "compiler_options" not in text
    assert "Resume with the checkpoint's setup" in text
    with pytest.warns(UserWarning) as record:          # only the CPU options: how to flip them
        fit_module._check_compiled_with({"compiled_with": _compiled_with(compiler_options=None)},
                                        _compiled_with(), "ckpt-dir")
    assert "CNNJAX_XLA_CPU_OPTIONS=0" in str(record[0].message)


_PMAP_CHECK = """
import jax, jax.numpy as jnp, numpy as np, optax
from cnnjax import layers as L
from cnnjax.train import create_state, make_strategy, make_train_step
from cnnjax.train.cpu_speed import compile_options as co
model = L.Sequential([L.Conv2D(64, 3, padding="same", activation="relu"),
                      L.Conv2D(64, 3, padding="same", activation="relu"), L.GlobalAveragePooling2D(), L.Dense(10)])
tx = optax.sgd(0.1, 0.9)
state = create_state(model, tx, input_shape=(16, 16, 3), key=jax.random.PRNGKey(0))
rng = np.random.RandomState(0)
x, y = rng.randint(0, 256, (3, 16, 16, 16, 3)).astype(np.uint8), rng.randint(0, 10, (3, 16))
strategy = make_strategy("pmap", model, tx)
assert strategy.compiler_options == co.cpu_compiler_options(), strategy.compiler_options
placed = strategy.place_state(state)
plain = jax.pmap(make_train_step(model, tx, axis_name="data", cpu_forms=True), axis_name="data", donate_argnums=0)
ref = strategy.place_state(state)
for t in range(3):
    placed, _ = strategy.train_step(placed, *strategy.place_batch(x[t], y[t]))
    ref, _ = plain(ref, *strategy.place_batch(x[t], y[t]))
diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(placed.params), jax.tree.leaves(ref.params)))
assert diff < 1e-5, diff
ours = co.pmap(make_train_step(model, tx, axis_name="data", cpu_forms=True), axis_name="data", donate_argnums=0,
               platform="cpu")
s = strategy.place_state(state)
for t in range(3):
    s, _ = ours(s, *strategy.place_batch(x[t], y[t]))
assert len(ours.executables) == 1, len(ours.executables)   # the state it returns is laid out as it came in
text = next(iter(ours.executables.values())).as_text()
default = plain.lower(s, *strategy.place_batch(x[0], y[0])).compile().as_text()
print("ynn", len(co._YNN.findall(text)), len(co._YNN.findall(default)))
# pmap's outputs (their mesh axis named otherwise) reuse the executable; devices in another order run by jax.pmap
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
double = co.pmap(lambda a: a * 2, platform="cpu")
a = jax.device_put(np.arange(8.0).reshape(2, 4), NamedSharding(Mesh(np.array(jax.devices()), ("d",)), P("d")))
a = double(double(a))
backwards = NamedSharding(Mesh(np.array(jax.devices()[::-1]), ("d",)), P("d"))
b = double(jax.device_put(np.arange(8.0).reshape(2, 4), backwards))
assert len(double.executables) == 1, len(double.executables)
np.testing.assert_array_equal(np.asarray(a), 4 * np.arange(8.0).reshape(2, 4))
np.testing.assert_array_equal(np.asarray(b), 2 * np.arange(8.0).reshape(2, 4))
"""


@needs_options
@pytest.mark.long   # outside README's test command (CI's 8 minutes); `pytest -m long` runs it
def test_pmap_steps_compile_with_the_options_once_and_compute_the_same():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    out = subprocess.run([sys.executable, "-c", _PMAP_CHECK], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    ours, default = map(int, out.stdout.split("ynn")[1].split())
    assert ours < default      # the convolutions' gradients left YNNPACK, as in jit's programs


def test_pmap_refuses_static_arguments_by_name():
    with pytest.raises(ValueError, match="static_broadcasted_argnums=1 is not supported"):
        co.pmap(lambda x, n: x * n, static_broadcasted_argnums=1)
