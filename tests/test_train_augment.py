"""fit(augment=...) runs the augmentation inside the compiled step, on every batch, repeatably from the seed (a
resumed run repeats the uninterrupted run's draws bit for bit); evaluate(tta="flip") averages the logits of each
image and its mirror image."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import cli
from cnnjax.train import evaluate, fit
from test_parallel_worker import TinyCNN, toy_data

KW = dict(batch_size=16, progress=False, loop="step", optimizer="adam", learning_rate=1e-2, seed=4)


def _same(a, b):
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_the_augmentation_sees_every_batch_inside_the_step():
    """An augmentation that blanks the images trains exactly as blank images do: it is applied to each batch."""
    x, y = toy_data(64)
    blanked, _ = fit(TinyCNN(), (x, y), epochs=1, augment=lambda key, images: jnp.zeros_like(images), **KW)
    blank, _ = fit(TinyCNN(), (np.zeros_like(x), y), epochs=1, **KW)
    assert _same(blanked.params, blank.params)


def test_augmented_runs_repeat_from_the_seed_and_differ_from_plain_ones(tmp_path):
    x, y = toy_data(64)
    first, _ = fit(TinyCNN(), (x, y), epochs=2, augment="flip,translate:1", **KW)
    again, _ = fit(TinyCNN(), (x, y), epochs=2, augment="flip,translate:1", **KW)
    plain, _ = fit(TinyCNN(), (x, y), epochs=2, **KW)
    assert _same(first.params, again.params) and not _same(first.params, plain.params)
    # resumed: epoch 1, then epoch 2 from its checkpoint, equals the two epochs in one run, bit for bit
    ck = str(tmp_path / "ck")
    fit(TinyCNN(), (x, y), epochs=1, augment="flip,translate:1", checkpoint_dir=ck, **KW)
    resumed, _ = fit(TinyCNN(), (x, y), epochs=2, augment="flip,translate:1", checkpoint_dir=ck, resume=True, **KW)
    assert _same(resumed.params, first.params)
    with pytest.raises(ValueError, match=r"augment='flip,translate:1' there, 'flip' here"):
        fit(TinyCNN(), (x, y), epochs=3, augment="flip", checkpoint_dir=ck, resume=True, **KW)


def test_bad_augment_arguments_are_named():
    x, y = toy_data(32)
    with pytest.raises(TypeError, match="fit: augment must be a spec such as 'flip,translate:2' or a function"):
        fit(TinyCNN(), (x, y), epochs=1, augment=3, **KW)
    with pytest.raises(ValueError, match="spin"):
        fit(TinyCNN(), (x, y), epochs=1, augment="flip,spin", **KW)


def test_cli_bad_augment_spec_exits_2_before_reading_data(capsys):
    assert cli.main(["train", "--model", "mnist_cnn", "--augment", "flip,spin:3"]) == 2
    assert "--augment 'flip,spin:3'" in capsys.readouterr().err


def test_evaluate_with_flip_tta_averages_the_mirror_logits():
    x, y = toy_data(48)
    model = TinyCNN()
    state, _ = fit(model, (x, y), epochs=1, **KW)
    variables = {"params": state.params}
    images = jnp.asarray(x)                       # toy images are float in [0, 1], used as they are
    logits = (model.apply(variables, images) + model.apply(variables, images[:, :, ::-1])) / 2
    want_acc = float(jnp.mean(jnp.argmax(logits, -1) == y))
    want_loss = float(jnp.mean(jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, y[:, None], 1)[:, 0]))
    got = evaluate(model, state, (x, y), batch_size=20, tta="flip")
    assert got["accuracy"] == pytest.approx(want_acc) and got["loss"] == pytest.approx(want_loss, rel=1e-5)
    with pytest.raises(ValueError, match="evaluate: tta='mirror'; valid: None or 'flip'"):
        evaluate(model, state, (x, y), tta="mirror")


def test_batches_gathered_on_the_device_are_the_host_batches():
    """data_on_device=True keeps the set on the device and gathers each batch in the step from the same rows as
    the host path: the gathered batch equals the host batch, and training matches (to float rounding: another
    XLA program) in every loop form; an augmented on-device run resumed from its checkpoint is bit-identical."""
    from cnnjax.train import epoch_order
    from cnnjax.train.steps import gather_batch
    x, y = toy_data(64)
    rows = epoch_order(4, 0, 64)[:16]
    gx, gy = jax.jit(gather_batch)(jnp.asarray(x), jnp.asarray(y), jnp.asarray(rows))
    assert np.array_equal(np.asarray(gx), x[rows]) and np.array_equal(np.asarray(gy), y[rows])
    for loop in ("step", "scan", "unroll"):
        host, h_hist = fit(TinyCNN(), (x, y), epochs=2, data_on_device=False, **dict(KW, loop=loop))
        dev, d_hist = fit(TinyCNN(), (x, y), epochs=2, data_on_device=True, **dict(KW, loop=loop))
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), dev.params, host.params)
        assert d_hist["loss"] == pytest.approx(h_hist["loss"], rel=1e-5)


def test_an_augmented_on_device_run_resumes_bit_identically(tmp_path):
    x, y = toy_data(64)
    kw = dict(KW, augment="flip,translate:1", data_on_device=True, loop="scan")
    straight, _ = fit(TinyCNN(), (x, y), epochs=2, **kw)
    fit(TinyCNN(), (x, y), epochs=1, checkpoint_dir=str(tmp_path), checkpoint_every=3, **kw)
    resumed, _ = fit(TinyCNN(), (x, y), epochs=2, checkpoint_dir=str(tmp_path), checkpoint_every=3, resume=True, **kw)
    assert _same(resumed.params, straight.params) and _same(resumed.opt_state, straight.opt_state)


def test_data_on_device_refuses_what_it_cannot_do():
    x, y = toy_data(32)
    with pytest.raises(TypeError, match="fit: data_on_device must be True, False or None, got 'yes'"):
        fit(TinyCNN(), (x, y), epochs=1, data_on_device="yes", **KW)
    with pytest.raises(ValueError, match="data_on_device=True needs parallel='none' or 'shard'"):
        fit(TinyCNN(), (x, y), epochs=1, data_on_device=True, parallel="pmap", **KW)


_SHARD_CHECK = """
import jax, numpy as np
from cnnjax.train import fit
from test_parallel_worker import TinyCNN, toy_data
x, y = toy_data(64)
kw = dict(batch_size=16, progress=False, optimizer="adam", learning_rate=1e-2, seed=1, epochs=1, parallel="shard",
          loop="scan")
a, _ = fit(TinyCNN(), (x, y), data_on_device=False, **kw)
b, _ = fit(TinyCNN(), (x, y), data_on_device=True, **kw)
assert len(jax.devices()) == 4
print(max(float(np.max(np.abs(np.asarray(p) - np.asarray(q)))) for p, q in zip(jax.tree.leaves(a.params),
                                                                                  jax.tree.leaves(b.params))))
"""


def test_sharded_runs_gather_on_the_devices_like_the_host_path():
    """parallel='shard' over 4 forced CPU devices: the dataset replicated on each, the rows split like a batch."""
    import os
    import subprocess
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               PYTHONPATH=os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", _SHARD_CHECK], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert float(out.stdout.split()[-1]) < 1e-6
