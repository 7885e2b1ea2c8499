"""cnnjax.train on one device: optimizers and schedules, the loss, one step by hand, fit, evaluate, bf16,
non-finite losses and bad input. Tiny models (tests/test_parallel_worker.py) keep compiles short."""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnnjax.train import (NonFiniteLossError, create_state, epoch_order, evaluate, fit,
                          make_eval_step, make_optimizer, make_schedule, make_train_chunk, make_train_step)
from test_parallel_worker import TinyCNN, toy_data


# ---------------------------------------------------------------- optimizers and schedules (closed forms)
def _one_update(tx, g, p):
    updates, _ = tx.update(g, tx.init(p), p)
    return np.asarray(updates)


def test_sgd_first_update_is_minus_lr_times_gradient():
    p, g = jnp.array([1.0, -2.0]), jnp.array([0.5, 4.0])
    np.testing.assert_allclose(_one_update(make_optimizer("sgd", 0.1, momentum=0.0), g, p), [-0.05, -0.4])
    # with L2 weight decay the gradient is g + wd * p
    np.testing.assert_allclose(_one_update(make_optimizer("sgd", 0.1, momentum=0.0, weight_decay=0.01), g, p),
                               [-0.1 * (0.5 + 0.01), -0.1 * (4.0 - 0.02)], rtol=1e-6)


def test_sgd_momentum_and_nesterov_second_update():
    # momentum m: v1 = g1, v2 = m v1 + g2, update2 = -lr v2; nesterov: update2 = -lr (g2 + m v2)
    p, g1, g2, lr, m = jnp.zeros(1), jnp.array([1.0]), jnp.array([2.0]), 0.1, 0.9
    for nesterov, expected in [(False, -lr * (m * 1 + 2)), (True, -lr * (2 + m * (m * 1 + 2)))]:
        tx = make_optimizer("sgd", lr, momentum=m, nesterov=nesterov)
        s = tx.init(p)
        _, s = tx.update(g1, s, p)
        u, _ = tx.update(g2, s, p)
        np.testing.assert_allclose(np.asarray(u), [expected], rtol=1e-6)


def test_adam_first_update_is_minus_lr_times_sign_and_adamw_decays():
    p, g = jnp.array([1.0, 2.0]), jnp.array([3.0, -0.002])
    np.testing.assert_allclose(_one_update(make_optimizer("adam", 1e-3), g, p), [-1e-3, 1e-3], rtol=1e-4)
    # decoupled decay: update = -lr * (sign(g) + wd * p)
    np.testing.assert_allclose(_one_update(make_optimizer("adamw", 1e-3, weight_decay=0.1), g, p),
                               [-1e-3 * (1 + 0.1), -1e-3 * (-1 + 0.2)], rtol=1e-4)


def test_schedules_closed_form():
    cos = make_schedule("cosine", 1.0, total_steps=100)
    for t in (0, 25, 50, 100):
        assert float(cos(t)) == pytest.approx((1 + math.cos(math.pi * t / 100)) / 2, abs=1e-6)
    warm = make_schedule("warmup_cosine", 2.0, total_steps=110, warmup_steps=10)
    assert [float(warm(t)) for t in (0, 5, 10)] == pytest.approx([0.0, 1.0, 2.0])
    assert float(warm(60)) == pytest.approx(1.0, abs=1e-6)          # halfway through the cosine part
    const = make_schedule("constant", 0.5, warmup_steps=4)
    assert [float(const(t)) for t in (0, 2, 4, 50)] == pytest.approx([0.0, 0.25, 0.5, 0.5])
    one = make_schedule("one_cycle", 1.0, total_steps=100)
    assert float(one(30)) == pytest.approx(1.0, abs=1e-3) and float(one(0)) < 0.1 and float(one(100)) < 1e-3


@pytest.mark.parametrize("call, match", [
    (lambda: make_optimizer("rmsprop"), "unknown optimizer 'rmsprop'; valid names: sgd, adam, adamw"),
    (lambda: make_optimizer("adam", 0.0), "learning_rate must be a finite number > 0, got 0.0"),
    (lambda: make_optimizer("adam", -1e-3), "learning_rate must be a finite number > 0"),
    (lambda: make_optimizer("sgd", 0.1, momentum=1.0), r"momentum must be in \[0, 1\)"),
    (lambda: make_schedule("linear", 0.1), "unknown schedule 'linear'; valid names"),
    (lambda: make_schedule("cosine", 0.1), "needs total_steps > warmup_steps"),
])
def test_optimizer_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------- loss and one step by hand
def test_the_training_loss_matches_numpy_with_label_smoothing():
    """The steps' loss is cnnjax.functional.softmax_cross_entropy (one home), checked against the formula."""
    from cnnjax.functional import softmax_cross_entropy

    def cross_entropy(logits, labels, eps=0.0):
        return softmax_cross_entropy(logits, labels, label_smoothing=eps)

    rng = np.random.default_rng(0)
    logits, labels, eps = rng.normal(size=(5, 4)).astype(np.float32), np.array([0, 3, 1, 1, 2]), 0.2
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    q = np.full((5, 4), eps / 4) + (1 - eps) * np.eye(4)[labels]
    np.testing.assert_allclose(cross_entropy(jnp.asarray(logits), jnp.asarray(labels), eps), -(q * logp).sum(1),
                               rtol=1e-5)
    np.testing.assert_allclose(cross_entropy(jnp.asarray(logits), jnp.asarray(labels)),
                               -logp[np.arange(5), labels], rtol=1e-5)
    # bfloat16 logits still give a float32 loss
    assert cross_entropy(jnp.asarray(logits, jnp.bfloat16), jnp.asarray(labels)).dtype == jnp.float32


def test_train_step_equals_hand_written_sgd_step():
    model, tx = TinyCNN(), optax.sgd(0.5)
    x, y = toy_data(16)
    state = create_state(model, tx, input_shape=(8, 8, 1), key=jax.random.PRNGKey(1))
    before = jax.tree.map(np.array, state.params)

    def loss(params):   # independent reference: plain log-softmax NLL
        logits = model.apply({"params": params}, jnp.asarray(x))
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), jnp.asarray(y)[:, None], 1))

    grads = jax.grad(loss)(state.params)
    new, metrics = jax.jit(make_train_step(model, tx), donate_argnums=0)(state, x, y)
    jax.tree.map(lambda p, g, q: np.testing.assert_allclose(q, p - 0.5 * np.asarray(g), rtol=1e-5, atol=1e-6),
                 before, grads, new.params)
    assert int(new.step) == 1
    assert float(metrics["loss"]) == pytest.approx(float(loss(jax.tree.map(jnp.asarray, before))), rel=1e-5)
    logits = model.apply({"params": before}, jnp.asarray(x))
    assert float(metrics["accuracy"]) == pytest.approx(float(np.mean(np.argmax(logits, -1) == y)))


def test_uint8_images_are_scaled_to_unit_range():
    model, tx = TinyCNN(), optax.sgd(0.1)
    x, y = toy_data(16)
    u8 = np.round(x * 255).astype(np.uint8)
    state = create_state(model, tx, input_shape=(8, 8, 1), key=jax.random.PRNGKey(0))
    ev = jax.jit(make_eval_step(model))
    w = np.ones(16, np.float32)
    a, b = ev(state, u8, y, w), ev(state, u8.astype(np.float32) / 255, y, w)
    assert float(a["loss_sum"]) == pytest.approx(float(b["loss_sum"]), rel=1e-5)


def test_scan_chunk_equals_separate_steps():
    model, tx = TinyCNN(dropout=0.3), optax.adam(1e-2)
    x, y = toy_data(48)
    xs, ys = x.reshape(3, 16, 8, 8, 1), y.reshape(3, 16)
    step = make_train_step(model, tx)
    s1 = create_state(model, tx, input_shape=(8, 8, 1), key=jax.random.PRNGKey(2))
    s2 = create_state(model, tx, input_shape=(8, 8, 1), key=jax.random.PRNGKey(2))
    losses = []
    for i in range(3):
        s1, m = jax.jit(step)(s1, xs[i], ys[i])
        losses.append(float(m["loss"]))
    s2, m2 = jax.jit(make_train_chunk(step))(s2, xs, ys)
    np.testing.assert_allclose(np.asarray(m2["loss"]), losses, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), s1.params, s2.params)


# ---------------------------------------------------------------- fit and evaluate
def test_epoch_order_is_a_permutation_fixed_by_seed_and_epoch():
    a, b, c = epoch_order(0, 0, 50), epoch_order(0, 0, 50), epoch_order(0, 1, 50)
    assert sorted(a.tolist()) == list(range(50)) and (a == b).all() and not (a == c).all()


def test_fit_learns_the_toy_task_and_reports_keras_history():
    x, y = toy_data(192)
    vx, vy = toy_data(64, seed=1)
    seen = []
    state, hist = fit(TinyCNN(), (x, y), optimizer="adam", learning_rate=2e-2, epochs=6, batch_size=32,
                      validation_data={"images": vx, "labels": vy}, progress=False, on_epoch_end=seen.append)
    assert hist["epoch"] == [1, 2, 3, 4, 5, 6] and len(seen) == 6 and seen[-1]["epoch"] == 6
    assert {"loss", "accuracy", "images_per_s", "seconds", "val_loss", "val_accuracy"} <= set(hist)
    assert hist["loss"][-1] < hist["loss"][0]
    assert hist["val_accuracy"][-1] >= 0.8           # lines vs no line: easy once trained; chance is 1/3
    assert int(state.step) == 6 * (192 // 32)
    # evaluate() agrees with a numpy count over model.apply (batch 50 pads the last of 2 batches)
    ev = evaluate(TinyCNN(), state, (vx, vy), batch_size=50)
    logits = np.asarray(TinyCNN().apply({"params": state.params}, jnp.asarray(vx)))
    assert ev["accuracy"] == pytest.approx(float(np.mean(logits.argmax(1) == vy)))
    assert ev["accuracy"] == pytest.approx(hist["val_accuracy"][-1])


def test_fit_bfloat16_compute_keeps_float32_params_and_tracks_float32_run():
    x, y = toy_data(64)
    kw = dict(optimizer="sgd", learning_rate=0.1, epochs=1, batch_size=32, progress=False)
    s32, h32 = fit(TinyCNN(), (x, y), **kw)
    s16, h16 = fit(TinyCNN(), (x, y), dtype="bfloat16", **kw)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(s16.params))
    assert h16["loss"][0] == pytest.approx(h32["loss"][0], rel=2e-2)     # bf16 has ~3 significant digits
    assert h16["loss"][0] != h32["loss"][0]                               # ... and really ran in bf16


class _QuietCNN(nn.Module):
    """conv -> relu -> x 1e-3 -> dense: the conv's backward signals are ~1e-3 of the dense layer's, as in a deep
    network, and the batch mean makes them ~1/B smaller again: in float16 they fall below 6e-5, its smallest
    normal number."""
    dtype: object = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Conv(4, (3, 3), dtype=self.dtype)(x)) * 1e-3
        return nn.Dense(3, dtype=self.dtype)(x.reshape(x.shape[0], -1))


def test_float16_step_scales_the_loss_and_unscales_the_gradients():
    from cnnjax.train.steps import loss_scale_for

    assert loss_scale_for(jnp.float16, 256) == 256.0 and loss_scale_for("float16", 100) == 64.0
    assert loss_scale_for(jnp.bfloat16, 256) == 1.0 and loss_scale_for(None, 256) == 1.0
    x, y = toy_data(256)
    tx = optax.sgd(1.0)                         # the update is minus the gradient
    state = create_state(_QuietCNN(), tx, input_shape=(8, 8, 1), key=jax.random.PRNGKey(1))

    def gradient(model, **kw):
        new, metrics = jax.jit(make_train_step(model, tx, **kw))(state, x, y)
        grads = jax.tree.map(lambda a, b: np.asarray(a, np.float64) - np.asarray(b, np.float64),
                             state.params, new.params)
        return grads, float(metrics["loss"])

    exact, loss32 = gradient(_QuietCNN())
    scaled, loss16 = gradient(_QuietCNN(jnp.float16), dtype=jnp.float16)              # automatic: 256
    unscaled, _ = gradient(_QuietCNN(jnp.float16), dtype=jnp.float16, loss_scale=1.0)
    assert loss16 == pytest.approx(loss32, rel=1e-2)          # the reported loss is the unscaled mean

    def error(g):
        return np.linalg.norm(g["Conv_0"]["kernel"] - exact["Conv_0"]["kernel"]) / np.linalg.norm(
            exact["Conv_0"]["kernel"])

    assert error(unscaled) > 0.1 and error(scaled) < 0.02, (error(unscaled), error(scaled))
    # a power-of-two scale rounds nothing in float32: the same update, bit for bit
    same, _ = gradient(_QuietCNN(), loss_scale=1024.0)
    jax.tree.map(np.testing.assert_array_equal, same, exact)
    with pytest.raises(ValueError, match="loss_scale=0"):
        make_train_step(_QuietCNN(), tx, loss_scale=0)


def test_fit_float16_keeps_float32_params_and_tracks_float32_run():
    x, y = toy_data(64)
    kw = dict(optimizer="sgd", learning_rate=0.1, epochs=1, batch_size=32, progress=False)
    s32, h32 = fit(TinyCNN(), (x, y), **kw)
    s16, h16 = fit(TinyCNN(), (x, y), dtype="float16", **kw)
    assert all(p.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(s16.params))
    assert h16["loss"][0] == pytest.approx(h32["loss"][0], rel=5e-3)     # float16: ~3.3 significant digits


def test_nonfinite_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path):
    from cnnjax.train import Checkpointer
    x, y = toy_data(72)                      # batch 16: 4 steps per epoch, 8 rows left out of each epoch
    order0, order1 = epoch_order(0, 0, 72), epoch_order(0, 1, 72)
    pos1 = {int(r): i for i, r in enumerate(order1[:64])}
    row = next(int(r) for r in order0[64:] if int(r) in pos1)     # unused in epoch 1, used in epoch 2
    bad_step = 4 + pos1[row] // 16 + 1                              # 1-based global step that sees it
    x = x.copy()
    x[row] = np.nan
    with pytest.raises(NonFiniteLossError, match=rf"loss became nan at step {bad_step} \(epoch 2\); last finite "
                                                 rf"loss [0-9.e-]+ at step {bad_step - 1}\. .*last good "
                                                 rf"checkpoint is step {bad_step - 1}"):
        fit(TinyCNN(), (x, y), epochs=2, batch_size=16, progress=False, checkpoint_dir=str(tmp_path),
            checkpoint_every=1, seed=0, loop="step")
    ck = Checkpointer(str(tmp_path))
    assert ck.latest_step() == bad_step - 1
    params, _, _ = ck.restore_variables()
    assert all(np.isfinite(np.asarray(p)).all() for p in jax.tree.leaves(params))


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(epochs=0), ValueError, "fit: epochs must be an int >= 1, got 0"),
    (dict(batch_size=0), ValueError, "fit: batch_size must be an int >= 1, got 0"),
    (dict(batch_size=1000), ValueError, "batch_size 1000 is larger than the 64 training examples"),
    (dict(optimizer="lamb"), ValueError, "unknown optimizer 'lamb'; valid names: sgd, adam, adamw"),
    (dict(learning_rate=-1.0), ValueError, "learning_rate must be a finite number > 0, got -1.0"),
    (dict(loop="fast"), ValueError, "unknown loop 'fast'; valid: auto, measure, scan, step, unroll"),
    (dict(parallel="tpu"), ValueError, "unknown parallel mode 'tpu'; valid: none, pmap, shard"),
    (dict(resume=True), ValueError, "resume=True needs a checkpoint_dir"),
    (dict(optimizer=3), TypeError, "optimizer must be a name or an optax.GradientTransformation"),
    (dict(label_smoothing=1.0), ValueError, r"label_smoothing=1.0 must be a number in \[0, 1\)"),
    (dict(label_smoothing=-0.5), ValueError, r"label_smoothing=-0.5 must be a number in \[0, 1\)"),
    (dict(dtype="float8"), ValueError, "dtype='float8' is not a floating-point dtype"),
    (dict(dtype="int32"), ValueError, "dtype='int32' is not a floating-point dtype"),
])
def test_fit_bad_input(kwargs, err, match):
    x, y = toy_data(64)
    args = dict(epochs=1, batch_size=16, progress=False) | kwargs
    with pytest.raises(err, match=match):
        fit(TinyCNN(), (x, y), **args)


def test_fit_bad_data():
    with pytest.raises(ValueError, match=r"images \[N, H, W, C\] and labels \[N\]"):
        fit(TinyCNN(), (np.zeros((4, 8, 8)), np.zeros(4, int)), epochs=1, batch_size=2)
    with pytest.raises(TypeError, match="labels must be integer class ids"):
        fit(TinyCNN(), (np.zeros((4, 8, 8, 1)), np.zeros(4)), epochs=1, batch_size=2)


@pytest.mark.parametrize("bad", [3, -1])
def test_labels_outside_the_models_classes_are_an_error(bad):
    """TinyCNN has 3 outputs: one_hot made label 3 (or -1) an all-zero target, a loss of 0, silently."""
    x, y = toy_data(32)
    wrong = y.copy()
    wrong[5] = bad
    match = rf"labels must be class indices in \[0, 3\) for a model with 3 outputs; got labels from {min(bad, 0)}"
    with pytest.raises(ValueError, match="fit: data " + match):
        fit(TinyCNN(), (x, wrong), epochs=1, batch_size=16, progress=False)
    with pytest.raises(ValueError, match="fit: validation_data " + match):
        fit(TinyCNN(), (x, y), epochs=1, batch_size=16, progress=False, validation_data=(x, wrong))
    state, _ = fit(TinyCNN(), (x, y), epochs=1, batch_size=16, progress=False, loop="step")
    with pytest.raises(ValueError, match="evaluate: data " + match):
        evaluate(TinyCNN(), state, (x, wrong))


def test_images_of_another_shape_are_an_error():
    x, y = toy_data(32)
    other, _ = toy_data(8, size=10)
    with pytest.raises(ValueError, match=r"validation_data images have shape \(10, 10, 1\), the training images "
                                         r"\(8, 8, 1\)"):
        fit(TinyCNN(), (x, y), epochs=1, batch_size=16, progress=False, validation_data=(other, y[:8]))
    state, _ = fit(TinyCNN(), (x, y), epochs=1, batch_size=16, progress=False, loop="step")
    with pytest.raises(ValueError, match=r"evaluate: the state's parameters do not fit this model on images of "
                                         r"shape \(10, 10, 1\)"):
        evaluate(TinyCNN(), state, (other, y[:8]))
    with pytest.raises(ValueError, match=r"do not fit this model .* another model"):     # a wider TinyCNN
        evaluate(TinyCNN(features=6), state, (x, y))


class _GlobalPoolNet(nn.Module):
    """conv -> global average pool -> dense: the same parameters for any image size."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(3)(jnp.mean(nn.relu(nn.Conv(4, (3, 3))(x)), axis=(1, 2)))


def test_validation_images_of_another_size_where_the_model_takes_any_size():
    x, y = toy_data(32)
    other, other_y = toy_data(8, size=10)
    _, history = fit(_GlobalPoolNet(), (x, y), epochs=1, batch_size=16, progress=False, loop="step",
                     validation_data=(other, other_y))
    assert len(history["val_accuracy"]) == 1


# ---------------------------------------------------------------- bad input: clear errors before any work
def test_float_images_must_be_in_unit_range():
    """Only uint8 images are divided by 255: float images in 0..255 trained silently on a 255x input."""
    x, y = toy_data(32)
    with pytest.raises(ValueError, match=r"fit: data images are float32 with values up to 255, but float images "
                                         r"must be in \[0, 1\].*pass uint8 images or divide these by 255"):
        fit(TinyCNN(), (x * 255, y), epochs=1, batch_size=16, progress=False)
    with pytest.raises(ValueError, match=r"fit: validation_data images are float32 with values up to 255"):
        fit(TinyCNN(), (x, y), epochs=1, batch_size=16, progress=False, validation_data=(x * 255, y))
    with pytest.raises(TypeError, match=r"fit: data images have dtype int32; pass uint8 images"):
        fit(TinyCNN(), (np.round(x * 255).astype(np.int32), y), epochs=1, batch_size=16, progress=False)
    state, _ = fit(TinyCNN(), (np.round(x * 255).astype(np.uint8), y), epochs=1, batch_size=16, progress=False,
                   loop="step")
    with pytest.raises(ValueError, match=r"evaluate: data images are float32 with values up to 255"):
        evaluate(TinyCNN(), state, (x * 255, y))
    assert 0 <= evaluate(TinyCNN(), state, (np.minimum(x * (1 + 1e-7), 1.0), y))["accuracy"] <= 1


def test_create_state_refuses_an_int_key():
    with pytest.raises(TypeError, match=r"create_state: key must be a key from jax\.random\.key\(\.\.\.\) or "
                                        r"jax\.random\.PRNGKey\(\.\.\.\), got int 0"):
        create_state(TinyCNN(), optax.sgd(0.1), input_shape=(8, 8, 1), key=0)
    typed = create_state(TinyCNN(), optax.sgd(0.1), input_shape=(8, 8, 1), key=jax.random.key(0))
    assert typed.params["Dense_0"]["kernel"].shape == (8 * 8 * 4, 3)


@pytest.mark.parametrize("seed, error, match", [
    (-1, ValueError, "seed must be an int >= 0, got -1"),
    (1.5, TypeError, "seed must be an int >= 0, got 1.5"),
    (2 ** 32, ValueError, r"seed=4294967296 must be < 2\*\*32.*the weights of seed 0")])
def test_fit_seed_must_be_a_non_negative_int(seed, error, match):
    x, y = toy_data(32)
    with pytest.raises(error, match="fit: " + match):
        fit(TinyCNN(), (x, y), epochs=1, batch_size=16, progress=False, seed=seed)


def test_empty_data_and_zero_eval_batch_size_are_named():
    x, y = toy_data(32)
    with pytest.raises(ValueError, match=r"fit: eval_batch_size must be an int >= 1, got 0"):
        fit(TinyCNN(), (x, y), epochs=1, batch_size=16, progress=False, validation_data=(x, y), eval_batch_size=0)
    with pytest.raises(ValueError, match=r"^fit: data has 0 training examples\.$"):
        fit(TinyCNN(), (x[:0], y[:0]), epochs=1, batch_size=4, progress=False)
    with pytest.raises(ValueError, match=r"fit: validation_data has 0 examples"):
        fit(TinyCNN(), (x, y), epochs=1, batch_size=16, progress=False, validation_data=(x[:0], y[:0]))
    state = create_state(TinyCNN(), optax.sgd(0.1), input_shape=(8, 8, 1), key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"evaluate: data has 0 examples"):
        evaluate(TinyCNN(), state, (x[:0], y[:0]))


@pytest.mark.parametrize("call", ["fit", "evaluate", "create_state"])
def test_a_model_name_instead_of_a_model_points_to_models_get(call):
    x, y = toy_data(32)
    state = create_state(TinyCNN(), optax.sgd(0.1), input_shape=(8, 8, 1), key=jax.random.PRNGKey(0))
    run = {"fit": lambda m: fit(m, (x, y), epochs=1, batch_size=16, progress=False),
           "evaluate": lambda m: evaluate(m, state, (x, y)),
           "create_state": lambda m: create_state(m, optax.sgd(0.1), input_shape=(8, 8, 1),
                                                  key=jax.random.PRNGKey(0))}[call]
    with pytest.raises(TypeError, match=rf"{call}: model must be a flax Module, got str 'mnist_cnn'; use "
                                        r"cnnjax\.models\.get\('mnist_cnn'\)"):
        run("mnist_cnn")
    with pytest.raises(TypeError, match=rf"{call}: model must be a flax Module, got the class TinyCNN"):
        run(TinyCNN)


def test_evaluate_refuses_a_variables_dict_as_state():
    x, y = toy_data(32)
    state = create_state(TinyCNN(), optax.sgd(0.1), input_shape=(8, 8, 1), key=jax.random.PRNGKey(0))
    with pytest.raises(TypeError, match=r"evaluate: state must be a TrainState \(from create_state or fit\), got "
                                        r"dict\. For bare variables, wrap them: TrainState\("):
        evaluate(TinyCNN(), {"params": state.params}, (x, y))
    from cnnjax.train import TrainState     # the wrapping the message shows works
    wrapped = TrainState(step=np.int32(0), params=state.params, opt_state=None, batch_stats={}, rng=None)
    assert evaluate(TinyCNN(), wrapped, (x, y)) == evaluate(TinyCNN(), state, (x, y))


def test_a_data_dict_without_images_and_labels_names_its_keys():
    x, y = toy_data(32)
    with pytest.raises(ValueError, match=r"fit: a data dict needs keys 'images' and 'labels', got \['x', 'y'\]"):
        fit(TinyCNN(), {"x": x, "y": y}, epochs=1, batch_size=16, progress=False)
    with pytest.raises(ValueError, match=r"fit: a validation_data dict needs keys 'images' and 'labels', got "
                                         r"\['images'\]"):
        fit(TinyCNN(), (x, y), epochs=1, batch_size=16, progress=False, validation_data={"images": x})


def test_numpy_scalars_are_numbers_and_other_types_are_named(tmp_path):
    x, y = toy_data(32)
    _, hist = fit(TinyCNN(), (x, y), optimizer="sgd", learning_rate=np.float32(0.1), momentum=np.float32(0.9),
                  weight_decay=np.float32(1e-4), label_smoothing=np.float64(0.1), epochs=np.int64(1),
                  batch_size=np.int64(16), seed=np.int64(3), keep=np.int32(2), checkpoint_dir=str(tmp_path),
                  learning_rates=[np.float32(0.1), 0.05], progress=False, loop="step")
    assert len(hist["loss_members"][0]) == 2
    for value, got in [("0.1", "str '0.1'"), (True, "bool True"),
                       (jnp.float32(0.1), r"a jax Array of dtype float32 and shape \(\)")]:
        with pytest.raises(TypeError, match=rf"fit: learning_rate must be a Python or NumPy number \(a static "
                                            rf"value\), got {got}"):
            fit(TinyCNN(), (x, y), epochs=1, batch_size=16, progress=False, learning_rate=value)
    with pytest.raises(TypeError, match=r"make_optimizer: momentum must be a Python or NumPy number .*got str '0.9'"):
        make_optimizer("sgd", 0.1, momentum="0.9")
    with pytest.raises(TypeError, match=r"fit: label_smoothing must be a Python or NumPy number .*got str"):
        fit(TinyCNN(), (x, y), epochs=1, batch_size=16, progress=False, label_smoothing="0.1")
    assert make_schedule("cosine", np.float32(0.5), total_steps=np.int64(10), warmup_steps=np.int64(2))(2) == 0.5


def test_fit_keep_is_named_as_the_fit_argument(tmp_path):
    x, y = toy_data(32)
    with pytest.raises(ValueError, match=r"^fit: keep must be an int >= 1, got 0\.$"):
        fit(TinyCNN(), (x, y), epochs=1, batch_size=16, progress=False, checkpoint_dir=str(tmp_path), keep=0)
