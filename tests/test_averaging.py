"""Weight averaging (cnnjax.train.averaging): the EMA and Lookahead transforms against their definitions, and
through fit (validation on the moving average)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnnjax.train import evaluate, fit
from cnnjax.train.averaging import averaged_params, cubic_lookahead_alpha, ema, lookahead
from test_parallel_worker import TinyCNN, toy_data

KW = dict(batch_size=16, progress=False, loop="step", optimizer="adam", learning_rate=1e-2, seed=5)


def _run(tx, params, grads):
    state = tx.init(params)
    for g in grads:
        updates, state = tx.update(g, state, params)
        params = optax.apply_updates(params, updates)
    return params, state


def test_ema_is_the_moving_average_of_the_parameters_and_leaves_them_alone():
    p0 = {"w": jnp.array([1.0, -2.0])}
    grads = [{"w": jnp.array([0.5, 1.0])}, {"w": jnp.array([-1.0, 2.0])}, {"w": jnp.array([0.25, 0.0])}]
    plain, _ = _run(optax.sgd(0.1), p0, grads)
    params, state = _run(ema(optax.sgd(0.1), 0.9), p0, grads)
    np.testing.assert_allclose(params["w"], plain["w"], rtol=1e-6)
    p, avg = np.array([1.0, -2.0]), np.array([1.0, -2.0])
    for g in grads:
        p = p - 0.1 * np.asarray(g["w"])
        avg = 0.9 * avg + 0.1 * p
    np.testing.assert_allclose(averaged_params(state)["w"], avg, rtol=1e-6)


def test_lookahead_moves_the_slow_weights_every_k_steps():
    p0 = {"w": jnp.array([0.0])}
    grads = [{"w": jnp.array([-1.0])}] * 4            # sgd(1): each step adds 1 to the fast weights
    params, _ = _run(lookahead(optax.sgd(1.0), 2, 0.5), p0, grads)
    # steps 1-2: fast 1, 2 -> sync: slow 0 + 0.5 * (2 - 0) = 1, params 1; steps 3-4: fast 2, 3 -> slow 2
    np.testing.assert_allclose(params["w"], [2.0])
    params3, _ = _run(lookahead(optax.sgd(1.0), 2, 0.5), p0, grads[:3])
    np.testing.assert_allclose(params3["w"], [2.0])    # between syncs: the fast weights (1 + 1)


def test_fit_validates_on_the_moving_average_and_refuses_bad_settings():
    x, y = toy_data(64)
    state, history = fit(TinyCNN(), (x, y), epochs=2, validation_data=(x, y), ema_decay=0.9,
                         validate_averaged=True, **KW)
    average = averaged_params(state.opt_state)
    assert average is not None and not np.allclose(average["Dense_0"]["kernel"], state.params["Dense_0"]["kernel"])
    scored = evaluate(TinyCNN(), state.replace(params=average), (x, y))
    assert history["val_loss"][-1] == pytest.approx(scored["loss"], rel=1e-5)
    _, la = fit(TinyCNN(), (x, y), epochs=2, lookahead=(3, 0.5), **KW)
    assert np.isfinite(la["loss"]).all()
    _, scheduled = fit(TinyCNN(), (x, y), epochs=1, lookahead=(2, cubic_lookahead_alpha(4, 0.9)), **KW)
    assert np.isfinite(scheduled["loss"]).all()      # a schedule as alpha (was float()ed for the run's record)
    with pytest.raises(ValueError, match=r"ema: decay must be a number in \[0, 1\), got 1.5"):
        fit(TinyCNN(), (x, y), epochs=1, ema_decay=1.5, **KW)
    with pytest.raises(ValueError, match="lookahead: every must be an int >= 1, got 0"):
        fit(TinyCNN(), (x, y), epochs=1, lookahead=(0, 0.5), **KW)
    with pytest.raises(ValueError, match="validate_averaged=True needs ema_decay"):
        fit(TinyCNN(), (x, y), epochs=1, validate_averaged=True, **KW)
