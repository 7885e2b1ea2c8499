"""Keras habits in fit: fit(model, x, y), validation_split, callbacks that stop without losing the state
(EarlyStopping with best-weights restore, a plain per-epoch hook), initial_state= to continue, and predict."""
import jax
import numpy as np
import pytest

from cnnjax.train import EarlyStopping, evaluate, fit, predict
from test_parallel_worker import TinyCNN, toy_data

KW = dict(batch_size=16, progress=False, loop="step", optimizer="adam", learning_rate=1e-2, seed=2)


def _same(a, b):
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_x_y_positional_and_validation_split_take_the_last_rows():
    x, y = toy_data(80)
    a, ha = fit(TinyCNN(), x, y, epochs=1, validation_split=0.2, **KW)
    b, hb = fit(TinyCNN(), (x[:64], y[:64]), epochs=1, validation_data=(x[64:], y[64:]), **KW)
    assert _same(a.params, b.params) and ha["val_loss"] == hb["val_loss"]
    with pytest.raises(ValueError, match="give validation_data or validation_split, not both"):
        fit(TinyCNN(), x, y, epochs=1, validation_split=0.2, validation_data=(x, y), **KW)
    with pytest.raises(ValueError, match=r"validation_split=1.5 must be a fraction in \(0, 1\)"):
        fit(TinyCNN(), x, y, epochs=1, validation_split=1.5, **KW)


def test_a_hook_that_says_stop_ends_training_with_the_state_so_far(tmp_path):
    x, y = toy_data(64)
    seen = []
    state, history = fit(TinyCNN(), (x, y), epochs=5, checkpoint_dir=str(tmp_path),
                         on_epoch_end=lambda r: seen.append(r["epoch"]) or (r["epoch"] == 2 and "stop"), **KW)
    assert seen == [1, 2] and history["epoch"] == [1, 2] and int(state.step) == 8
    two, _ = fit(TinyCNN(), (x, y), epochs=2, **KW)
    assert _same(state.params, two.params)                       # nothing lost: the 2-epoch run's weights
    from cnnjax.train import Checkpointer
    ck = Checkpointer(str(tmp_path))
    assert ck.latest_step() == 8                                 # and checkpointed
    ck.close()


def test_early_stopping_restores_the_best_epochs_weights():
    x, y = toy_data(64)
    # validation on shuffled labels: val_loss soon stops improving; patience 1 stops a run of 20 epochs early
    rng = np.random.default_rng(0)
    val = (x, rng.permutation(y))
    stopper = EarlyStopping("val_loss", patience=1, restore_best_weights=True)
    state, history = fit(TinyCNN(), (x, y), epochs=20, validation_data=val, callbacks=[stopper], **KW)
    assert stopper.stopped_epoch is not None and len(history["epoch"]) == stopper.stopped_epoch < 20
    best = int(np.argmin(history["val_loss"]))
    assert stopper.best_epoch == best + 1
    assert evaluate(TinyCNN(), state, val)["loss"] == pytest.approx(history["val_loss"][best], rel=1e-5)
    with pytest.raises(ValueError, match="monitor='val_acc' is not in fit's history"):
        fit(TinyCNN(), (x, y), epochs=1, callbacks=[EarlyStopping("val_acc")], **KW)
    with pytest.raises(TypeError, match="callbacks must have an on_epoch_end"):
        fit(TinyCNN(), (x, y), epochs=1, callbacks=[print], **KW)
    with pytest.raises(ValueError, match="patience must be an int >= 0"):
        EarlyStopping(patience=-1)


def test_initial_state_continues_training_and_predict_gives_probabilities():
    x, y = toy_data(64)
    first, _ = fit(TinyCNN(), (x, y), epochs=1, **KW)
    more, _ = fit(TinyCNN(), (x, y), epochs=1, initial_state=first, **KW)
    assert int(more.step) == 4 and not _same(more.params, first.params)
    assert evaluate(TinyCNN(), more, (x, y))["loss"] < evaluate(TinyCNN(), first, (x, y))["loss"]
    with pytest.raises(ValueError, match="initial_state's params does not fit this model"):
        fit(TinyCNN(features=8), (x, y), epochs=1, initial_state=first, **KW)
    probs = predict(TinyCNN(), more, x, batch_size=24)            # 64 = 24 + 24 + 16 (padded)
    logits = predict(TinyCNN(), more, x, probabilities=False)
    assert probs.shape == (64, 3) and np.allclose(probs.sum(-1), 1, atol=1e-5)
    np.testing.assert_allclose(probs, jax.nn.softmax(logits, -1), rtol=1e-5, atol=1e-6)
    accuracy = float(np.mean(np.argmax(logits, -1) == y))
    assert accuracy == pytest.approx(evaluate(TinyCNN(), more, (x, y))["accuracy"])
