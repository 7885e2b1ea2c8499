"""vmap ensembles (seeds and learning rates) and per-example gradients against separate, plain computations."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnnjax.train import (create_ensemble, create_state, fit, make_train_step, member, per_example_grads,
                          vmap_train_step, with_update_scale)
from test_parallel_worker import TinyCNN, toy_data


def _batches(n_steps=3, b=16):
    x, y = toy_data(n_steps * b)
    return x.reshape(n_steps, b, 8, 8, 1), y.reshape(n_steps, b)


def test_vmapped_ensemble_equals_separate_runs_with_dropout():
    model, tx = TinyCNN(dropout=0.3), optax.adam(1e-2)
    keys = list(jax.random.split(jax.random.PRNGKey(0), 3))
    xs, ys = _batches()
    ens = create_ensemble(model, tx, input_shape=(8, 8, 1), keys=keys)
    estep = jax.jit(vmap_train_step(make_train_step(model, tx)))
    for i in range(3):
        ens, em = estep(ens, xs[i], ys[i])
    step = jax.jit(make_train_step(model, tx))
    for k, key in enumerate(keys):
        s = create_state(model, tx, input_shape=(8, 8, 1), key=key)
        for i in range(3):
            s, m = step(s, xs[i], ys[i])
        assert float(em["loss"][k]) == pytest.approx(float(m["loss"]), rel=1e-5)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                     member(ens, k).params, s.params)


def test_each_member_draws_its_own_dropout_masks():
    # members with identical weights but different rng: with dropout their updates must differ (flax#4195)
    model, tx = TinyCNN(dropout=0.5), optax.sgd(0.1)
    keys = list(jax.random.split(jax.random.PRNGKey(0), 2))
    ens = create_ensemble(model, tx, input_shape=(8, 8, 1), keys=keys)
    same = jax.tree.map(lambda p: jnp.broadcast_to(p[0], p.shape), ens.params)
    ens = ens.replace(params=same)
    xs, ys = _batches(1)
    ens, m = jax.jit(vmap_train_step(make_train_step(model, tx)))(ens, xs[0], ys[0])
    assert float(m["loss"][0]) != float(m["loss"][1])
    kernel = ens.params["Dense_0"]["kernel"]
    assert not np.allclose(kernel[0], kernel[1])


def test_learning_rate_ensemble_member_equals_optimizer_with_that_rate():
    model = TinyCNN()
    lrs = [1e-3, 1e-2]
    tx = with_update_scale(optax.adamw(1.0, weight_decay=0.1))
    key = jax.random.PRNGKey(4)
    ens = create_ensemble(model, tx, input_shape=(8, 8, 1), keys=[key] * 2, lr_scales=lrs)
    xs, ys = _batches()
    estep = jax.jit(vmap_train_step(make_train_step(model, tx)))
    for i in range(3):
        ens, _ = estep(ens, xs[i], ys[i])
    for k, lr in enumerate(lrs):
        plain = optax.adamw(lr, weight_decay=0.1)
        s = create_state(model, plain, input_shape=(8, 8, 1), key=key)
        step = jax.jit(make_train_step(model, plain))
        for i in range(3):
            s, _ = step(s, xs[i], ys[i])
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                     member(ens, k).params, s.params)


def test_fit_ensemble_returns_member_axis_and_member_history():
    x, y = toy_data(64)
    state, hist = fit(TinyCNN(), (x, y), epochs=1, batch_size=32, ensemble=2, progress=False,
                      validation_data=(x, y))
    assert jax.tree.leaves(state.params)[0].shape[0] == 2 and state.step.shape == (2,)
    assert len(hist["loss_members"][0]) == 2 and len(hist["val_accuracy_members"][0]) == 2
    assert hist["loss"][0] == pytest.approx(np.mean(hist["loss_members"][0]))
    with pytest.raises(ValueError, match="ensembles run on one device"):
        fit(TinyCNN(), (x, y), epochs=1, batch_size=32, ensemble=2, parallel="shard", progress=False)
    with pytest.raises(ValueError, match="ensemble=3 but 2 learning_rates given"):
        fit(TinyCNN(), (x, y), epochs=1, batch_size=32, ensemble=3, learning_rates=[1e-3, 1e-2])


def test_per_example_grads_match_single_example_grads_and_average_to_batch_grad():
    model = TinyCNN()
    x, y = toy_data(6)
    params = model.init(jax.random.PRNGKey(0), jnp.asarray(x[:1]))["params"]
    g = jax.jit(lambda p, a, b: per_example_grads(model, p, a, b))(params, x, y)

    def loss(p, a, b):
        logits = model.apply({"params": p}, a)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), b[:, None], 1))

    for i in (0, 4):
        gi = jax.grad(loss)(params, jnp.asarray(x[i:i + 1]), jnp.asarray(y[i:i + 1]))
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a[i], b, rtol=1e-4, atol=1e-7), g, gi)
    full = jax.grad(loss)(params, jnp.asarray(x), jnp.asarray(y))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a.mean(0), b, rtol=1e-4, atol=1e-7), g, full)
