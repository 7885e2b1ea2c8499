"""The speedrun recipes (cnnjax.train.recipes) and their network: closed-form checks of each idea against
independent NumPy definitions, then one tiny run through fit."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnnjax import functional as F
from cnnjax.models.airbench import (SpeedrunNet, identity_conv_init, uniform_conv_init, whiten_width,
                                    whitening_kernel)
from cnnjax.params import count_variables
from cnnjax.train import averaging, create_state, evaluate, fit
from cnnjax.train.recipes import (MNIST, SpeedrunSettings, cifar10_speedrun, lr_factor, mnist_speedrun,
                                  param_labels, speedrun_optimizer, whitening_sample)
from cnnjax.functional import softmax_cross_entropy
from cnnjax.train.tta import tta_logits


def _patches_numpy(x):
    """All 2x2 patches of NHWC ``x``, flattened in HWIO order (dy, dx, channel), by explicit loops."""
    n, h, w, c = x.shape
    rows = [x[:, dy:h - 1 + dy, dx:w - 1 + dx, :] for dy in range(2) for dx in range(2)]
    return np.stack(rows, axis=-2).reshape(-1, 4 * c)


def _correlated_images(n=40, size=17, seed=0):
    """Images whose neighbouring pixels and channels are strongly correlated (a blurred, mixed noise field)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, size + 1, size + 1, 3))
    blurred = (z[:, :-1, :-1] + z[:, 1:, :-1] + z[:, :-1, 1:] + z[:, 1:, 1:]) / 2.0
    mix = np.array([[1.0, 0.8, 0.5], [0.0, 0.6, 0.4], [0.0, 0.0, 0.3]])
    return (blurred @ mix + 0.5).astype(np.float32)


def _correlated_u8(n=64, size=17, seed=1):
    return np.clip(_correlated_images(n=n, size=size, seed=seed) * 120 + 60, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------ the network

@pytest.mark.parametrize("channels", [3, 1])
def test_whitening_kernel_whitens_the_patches(channels):
    x = _correlated_images()[..., :channels]
    eps = 1e-3
    kernel = np.asarray(whitening_kernel(x, eps))
    k = 4 * channels
    assert kernel.shape == (2, 2, channels, 2 * k) and whiten_width(channels) == 2 * k
    p = _patches_numpy(x.astype(np.float64))
    p = p - p.mean(axis=0)
    lam = np.sort(np.linalg.eigvalsh(p.T @ p / len(p)))[::-1]
    if channels == 3:
        assert lam[0] / lam[-1] > 20          # the input really is correlated
    y = p @ kernel.reshape(k, 2 * k).astype(np.float64)
    np.testing.assert_allclose(y[:, :k].T @ y[:, :k] / len(y), np.diag(lam / (lam + eps)), atol=2e-3)
    np.testing.assert_allclose(y[:, k:], -y[:, :k], atol=1e-6)


def test_whitening_kernel_layout_is_the_conv_layout():
    x = _correlated_images(n=3)
    kernel = whitening_kernel(x, 5e-4)
    conv = np.asarray(F.conv2d(jnp.asarray(x), kernel, None, padding="valid"))
    np.testing.assert_allclose(conv.reshape(-1, 24), _patches_numpy(x) @ np.asarray(kernel).reshape(12, 24),
                               rtol=1e-4, atol=1e-4)


def test_identity_and_uniform_init():
    kernel = np.asarray(identity_conv_init(jax.random.key(0), (3, 3, 4, 6)))
    x = np.random.default_rng(0).normal(size=(1, 5, 5, 4)).astype(np.float32)
    y = np.asarray(F.conv2d(jnp.asarray(x), jnp.asarray(kernel), None, padding="same"))
    np.testing.assert_allclose(y[..., :4], x, atol=1e-6)
    assert np.abs(kernel[..., 4:]).max() <= 1 / np.sqrt(9 * 4)
    uniform = np.asarray(uniform_conv_init(jax.random.key(0), (3, 3, 8, 8)))
    assert np.abs(uniform).max() <= 1 / np.sqrt(9 * 8) and not np.allclose(uniform[1, 1], np.eye(8))
    assert SpeedrunNet().identity_init and MNIST["identity_init"] is False


def test_shapes_and_parameter_count_by_hand():
    for size, c in ((32, 3), (28, 1)):
        model = SpeedrunNet(widths=(4, 8, 8), dtype=jnp.bfloat16)
        x = jax.ShapeDtypeStruct((2, size, size, c), jnp.float32)
        variables = jax.eval_shape(lambda v: model.init(jax.random.key(0), v), x)
        out = jax.eval_shape(lambda v, x: model.apply(v, x), variables, x)
        assert out.shape == (2, 10) and out.dtype == jnp.float32               # float32 logits from bfloat16
        assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(variables))
        whiten = 2 * 2 * c * 8 * c + 8 * c
        block1 = 3 * 3 * 8 * c * 4 + 3 * 3 * 4 * 4 + 2 * 4     # two bias-free convs, two BN biases (no BN scale)
        block2 = 3 * 3 * 4 * 8 + 3 * 3 * 8 * 8 + 2 * 8
        block3 = 3 * 3 * 8 * 8 + 3 * 3 * 8 * 8 + 2 * 8
        assert count_variables(variables) == (whiten + block1 + block2 + block3 + 8 * 10, 2 * 2 * (4 + 8 + 8))


def test_input_normalisation_arguments_are_checked():
    shapes = jax.ShapeDtypeStruct((2, 17, 17, 3), jnp.float32)
    mean, std = (0.4, 0.5, 0.3), (0.2, 0.25, 0.1)
    for kwargs, match in ((dict(input_mean=(0.4, 0.5), input_std=std), r"input_mean=\(0.4, 0.5\) must be 3 finite"),
                          (dict(input_mean=mean), "input_std=None must be 3 finite floats"),
                          (dict(input_mean=mean, input_std=(1.0, 0.0, 1.0)), "input_std=.* must be > 0")):
        with pytest.raises(ValueError, match=match):
            jax.eval_shape(SpeedrunNet(widths=(4, 8, 8), **kwargs).init, jax.random.key(0), shapes)


# ------------------------------------------------------------------------------------------ the recipe's pieces

def test_tta_logits_are_the_mean_over_the_views():
    """Against a fixed random linear map of the pixels (not mirror-invariant), view by view."""
    n, h, w = 3, 17, 17
    weights = np.asarray(jax.random.normal(jax.random.key(0), (h * w * 3, 10)))
    x = np.asarray(jax.random.normal(jax.random.key(1), (n, h, w, 3)))

    def f(v):
        return np.asarray(v).reshape(len(v), -1) @ weights

    plain, mirror = f(x), f(x[:, :, ::-1, :])
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    up_left, down_right = padded[:, :h, :w], padded[:, 2:, 2:]
    pair = [(f(v) + f(v[:, :, ::-1])) / 2 for v in (up_left, down_right)]
    expected = {None: plain, "flip": (plain + mirror) / 2,
                "flip_translate": (plain + mirror) / 4 + pair[0] / 4 + pair[1] / 4,
                "translate": plain / 2 + f(up_left) / 4 + f(down_right) / 4}
    for mode, want in expected.items():
        np.testing.assert_allclose(tta_logits(f, jnp.asarray(x), mode), want, rtol=1e-5, atol=1e-5, err_msg=mode)
    with pytest.raises(ValueError, match="mode='mirror'; valid: None or 'flip'"):
        tta_logits(f, x, "mirror")


def test_lr_schedule_values():
    # 100 steps, warm-up over 25 from 0.2: 0.2 + 0.8 * s / 25, then (100 - s) / 75
    steps = jnp.array([0, 10, 25, 40, 100, 130])
    expected = [0.2, 0.2 + 0.8 * 10 / 25, 1.0, 60 / 75, 0.0, 0.0]
    np.testing.assert_allclose(lr_factor(steps, 100, 0.25, 0.2), expected, rtol=1e-6)
    expected = [0.2, 0.2 + 0.8 * 10 / 25, 1.0, 1 - 0.93 * 15 / 75, 0.07, 0.0]     # airbench94's end: 0.07
    np.testing.assert_allclose(lr_factor(steps, 100, 0.25, 0.2, 0.07), expected, rtol=1e-6)
    assert SpeedrunSettings().end_factor == 0.07 and MNIST["end_factor"] == 0.0


def test_param_groups_of_the_network():
    variables = jax.eval_shape(lambda x: SpeedrunNet(widths=(4, 8, 8)).init(jax.random.key(0), x),
                               jax.ShapeDtypeStruct((1, 17, 17, 3), jnp.float32))
    labels = param_labels(variables["params"])
    flat = {"/".join(str(getattr(k, "key", k)) for k in path): v
            for path, v in jax.tree_util.tree_flatten_with_path(labels)[0]}
    assert flat.pop("whiten/kernel") == "frozen" and flat.pop("whiten/bias") == "whiten_bias"
    assert {k for k, v in flat.items() if v == "norm_bias"} == {f"block{i}_norm{j}/bias" for i in (1, 2, 3)
                                                                for j in (1, 2)}
    assert {k for k, v in flat.items() if v == "weights"} == {f"block{i}_conv{j}/kernel" for i in (1, 2, 3)
                                                              for j in (1, 2)} | {"head/kernel"}


def test_optimizer_first_steps_by_hand():
    params = {"whiten": {"kernel": jnp.zeros((2,)), "bias": jnp.zeros((2,))},
              "block1_conv1": {"kernel": jnp.zeros((2,))}, "block1_norm1": {"bias": jnp.zeros((2,))}}
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    settings = SpeedrunSettings(epochs=100, batch_size=1024, warmup=0.25, whiten_bias_epochs=1)
    opt = speedrun_optimizer(settings, steps_per_epoch=1)
    state = opt.init(params)
    updates, state = opt.update(grads, state, params)
    lr = 11.5 / (1 + 1 / 0.15)                # 1.5 at batch 1024
    first = -lr * 0.2 * (1 + 0.85)           # Nesterov's first step: g + m * g
    np.testing.assert_allclose(updates["block1_conv1"]["kernel"], first, rtol=1e-5)
    np.testing.assert_allclose(updates["whiten"]["bias"], first, rtol=1e-5)
    np.testing.assert_allclose(updates["block1_norm1"]["bias"], 64 * first, rtol=1e-5)
    assert not np.any(np.asarray(updates["whiten"]["kernel"]))
    updates, state = opt.update(grads, state, params)        # step 1: past the whitening bias's one epoch
    assert not np.any(np.asarray(updates["whiten"]["bias"]))
    ones = jax.tree_util.tree_map(jnp.ones_like, params)     # weight decay alone: the same shrink in every group
    updates, _ = opt.update(jax.tree_util.tree_map(jnp.zeros_like, params), opt.init(ones), ones)
    shrink = -0.0153 * 1024 / (1024 * (1 + 1 / 0.15)) * 0.2 * 1.85
    # (the lookahead passes the update on as (p + u) - p: float32 rounding of p = 1, relative 1e-7 / |u|)
    np.testing.assert_allclose(updates["block1_conv1"]["kernel"], shrink, rtol=1e-4)
    np.testing.assert_allclose(updates["block1_norm1"]["bias"], shrink, rtol=1e-4)


def _reference_training(params, grads, s: SpeedrunSettings, spe: int):
    """The recipe's optimizer written out from its definition in NumPy (float64): per group Nesterov SGD,
    ``buf = m * buf + d; p -= eta * (d + m * buf)`` with ``d = g + decay / peak * p``, the triangular schedule,
    the whitening bias's rate 0 after its epochs, the kernel frozen; then every ``lookahead_every`` steps
    ``slow = k * slow + (1 - k) * fast; fast = slow`` with ``k = lookahead_decay * (t / T) ** 3``."""
    total = s.epochs * spe
    kilostep = 1024 * (1 + 1 / (1 - s.momentum))
    lr, decay = s.lr * s.batch_size / kilostep, s.weight_decay * s.batch_size / kilostep
    gate = round(s.whiten_bias_epochs * spe)
    group = {"whiten/kernel": None, "whiten/bias": "whiten_bias", "block1_norm1/bias": "norm_bias"}
    fast = {k: np.asarray(v, np.float64) for k, v in params.items()}
    slow = {k: v.copy() for k, v in fast.items()}
    buf = {k: np.zeros_like(v) for k, v in fast.items()}
    w = s.warmup * total
    for t, g in enumerate(grads):
        factor = (s.start_factor + (1 - s.start_factor) * t / w if t < w
                  else 1 + (s.end_factor - 1) * (t - w) / (total - w))
        for k in fast:
            name = group.get(k, "weights")
            if name is None:
                continue
            peak = lr * (s.bias_lr_scale if name == "norm_bias" else 1)
            eta = 0.0 if name == "whiten_bias" and t >= gate else peak * factor
            d = np.asarray(g[k], np.float64) + decay / peak * fast[k]
            buf[k] = s.momentum * buf[k] + d
            fast[k] = fast[k] - eta * (d + s.momentum * buf[k])
        if (t + 1) % s.lookahead_every == 0:
            kk = s.lookahead_decay * ((t + 1) / total) ** 3
            slow = {k: kk * slow[k] + (1 - kk) * fast[k] for k in fast}
            fast = {k: v.copy() for k, v in slow.items()}
    return fast, slow


def _nest(flat):
    out = {}
    for key, value in flat.items():
        layer, name = key.split("/")
        out.setdefault(layer, {})[name] = jnp.asarray(value, jnp.float32)
    return out


def _flat(tree):
    return {f"{layer}/{name}": np.asarray(v, np.float64) for layer, leaves in tree.items()
            for name, v in leaves.items()}


def test_optimizer_and_lookahead_against_the_definition():
    """13 steps of random gradients (T = 3 epochs of 5 steps = 15; lookahead every 4; the whitening bias trains
    for 1.4 epochs = 7 steps); the parameters and the slow weights against _reference_training, and
    Recipe.finish's last update (13 is not a multiple of 4) against the same definition."""
    rng = np.random.default_rng(0)
    flat0 = {"whiten/kernel": rng.normal(size=3), "whiten/bias": rng.normal(size=3),
             "block1_norm1/bias": rng.normal(size=2), "block1_conv1/kernel": rng.normal(size=(2, 2)),
             "head/kernel": rng.normal(size=4)}
    s = SpeedrunSettings(epochs=3, batch_size=512, lookahead_every=4, lookahead_decay=0.9, whiten_bias_epochs=1.4,
                         lr=4.0, weight_decay=0.5)
    grads = [{k: rng.normal(size=np.shape(v)) for k, v in flat0.items()} for _ in range(13)]
    opt = speedrun_optimizer(s, steps_per_epoch=5)
    params, state = _nest(flat0), opt.init(_nest(flat0))
    for t, g in enumerate(grads):
        updates, state = opt.update(_nest(g), state, params)
        params = optax.apply_updates(params, updates)
        if t in (1, 2, 6):      # between lookahead steps the fast weights train and the slow ones stay
            assert not np.allclose(_flat(params)["head/kernel"], _flat(averaging.lookahead_state(state).slow)[
                "head/kernel"])
    fast_ref, slow_ref = _reference_training(flat0, grads, s, spe=5)
    for k in flat0:
        np.testing.assert_allclose(_flat(params)[k], fast_ref[k], rtol=2e-5, atol=2e-6, err_msg=k)
        np.testing.assert_allclose(_flat(averaging.lookahead_state(state).slow)[k], slow_ref[k], rtol=2e-5,
                                   atol=2e-6, err_msg=k)
    np.testing.assert_array_equal(_flat(params)["whiten/kernel"], np.float32(flat0["whiten/kernel"]))
    # finish: a run of T = 13 steps (not a multiple of 4) ends with slow = k * slow + (1 - k) * fast, k = 0.9
    from cnnjax.train.recipes import Recipe
    recipe = Recipe(name="t", model=None, optimizer=opt, epochs=13, batch_size=1, label_smoothing=0.0,
                    augment=None, dtype=None, tta=None, input_shape=(1,), steps_per_epoch=1,
                    lookahead_every=4, lookahead_decay=0.9)
    from cnnjax.train.state import TrainState
    done = recipe.finish(TrainState(step=jnp.int32(13), params=params, opt_state=state, batch_stats={}, rng=None))
    for k in flat0:
        np.testing.assert_allclose(_flat(done.params)[k], 0.9 * slow_ref[k] + 0.1 * fast_ref[k], rtol=2e-5,
                                   atol=2e-6, err_msg=k)


def test_whitening_sample_spreads_over_a_class_sorted_set():
    labels = np.repeat(np.arange(10), 50)                 # 500 "images" sorted by class, as the JPEG copy is
    images = labels.reshape(-1, 1, 1, 1)
    assert np.bincount(np.asarray(whitening_sample(images, 100)).ravel(), minlength=10).tolist() == [10] * 10
    assert np.asarray(whitening_sample(images, 100, "first")).ravel().tolist() == [0] * 50 + [1] * 50
    assert whitening_sample(images, 600).shape[0] == 500
    for count in (300, 37):
        per_class = np.bincount(np.asarray(whitening_sample(images, count)).ravel(), minlength=10)
        assert per_class.sum() == count and per_class.max() - per_class.min() <= 1, (count, per_class)
    with pytest.raises(ValueError, match="how='random' is not one of 'spread', 'first'"):
        whitening_sample(images, 10, "random")


def _whitening_matrix(kernel):
    """``W W^T`` of a whitening kernel's first 4c filters: free of the eigenvectors' signs."""
    kernel = np.asarray(kernel, np.float64)
    w = kernel.reshape(-1, kernel.shape[-1])[:, :kernel.shape[-1] // 2]
    return w @ w.T


def test_recipe_whitens_and_normalises_with_the_sample_it_is_told():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 64)                              # sorted by class: the first 32 images are all class 0
    x = rng.integers(0, 100, (128, 17, 17, 3)).astype(np.uint8)
    x[y == 1, :, :, 0] += 120
    found = {}
    for how, sample in (("first", x[:32]), ("spread", x[::4])):
        recipe = cifar10_speedrun(x, whiten_images=32, whiten_sample=how, batch_size=64, widths=(4, 8, 8))
        sub = sample.astype(np.float64) / 255.0
        mean, std = sub.mean((0, 1, 2)), sub.std((0, 1, 2))
        np.testing.assert_allclose(recipe.model.input_mean, mean, rtol=1e-6)
        np.testing.assert_allclose(recipe.model.input_std, std, rtol=1e-6)
        p = _patches_numpy((sub - mean) / std)
        p = p - p.mean(0)
        lam, vec = np.linalg.eigh(p.T @ p / len(p))
        found[how] = _whitening_matrix(recipe.whitening_kernel)
        np.testing.assert_allclose(found[how], vec @ np.diag(1 / (lam + 5e-4)) @ vec.T, rtol=2e-3, atol=1e-2)
    assert np.abs(found["first"] - found["spread"]).max() > 0.1 * np.abs(found["spread"]).max()


def test_initial_state_is_fits_own_with_the_whitening_kernel():
    x = _correlated_u8()
    recipe = cifar10_speedrun(x, batch_size=32, widths=(4, 8, 8), epochs=2)
    assert recipe.steps_per_epoch == 2 and recipe.total_steps == 4 and recipe.augment == "flip,translate:2"
    assert recipe.tta == "flip_translate" and recipe.label_smoothing == 0.2 and recipe.dtype is None
    state = recipe.initial_state(3)
    fresh = create_state(recipe.model, recipe.optimizer, input_shape=(17, 17, 3), key=jax.random.PRNGKey(3))
    np.testing.assert_array_equal(state.params["whiten"]["kernel"], recipe.whitening_kernel)
    slow = averaging.lookahead_state(state.opt_state).slow
    np.testing.assert_array_equal(slow["whiten"]["kernel"], recipe.whitening_kernel)
    for a, b in zip(jax.tree_util.tree_leaves({**state.params, "whiten": {}}),
                    jax.tree_util.tree_leaves({**fresh.params, "whiten": {}})):
        np.testing.assert_array_equal(a, b)
    # the model normalises its input: the same network as one without normalisation on (x / 255 - mean) / std
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    scaled = x[:4].astype(np.float32) / 255.0
    by_hand = (scaled - np.float32(recipe.model.input_mean)) / np.float32(recipe.model.input_std)
    plain = recipe.model.clone(input_mean=None, input_std=None)
    np.testing.assert_allclose(jax.jit(recipe.model.apply)(variables, scaled), jax.jit(plain.apply)(variables, by_hand),
                               rtol=1e-5, atol=1e-5)
    m = mnist_speedrun(_correlated_u8()[..., :1], batch_size=32, widths=(32, 64, 64), dtype="bfloat16")
    assert (m.augment, m.tta, m.dtype, m.model.identity_init, m.model.widths) == (
        "translate:2", None, "bfloat16", False, (32, 64, 64))


@pytest.mark.long
def test_mnist_init_bfloat16_gradients_track_float32():
    """On digit-like images (black background), identity-initialised 3x3 convs pass near-constant channels
    through every block; BatchNorm (epsilon 1e-12) divides them by a tiny std and the first layers' gradients
    become huge cancelling terms that bfloat16 gets wrong (the full bfloat16 MNIST run went to chance). The MNIST
    recipe's uniform init keeps them small, and bfloat16's gradients track float32's."""
    rng = np.random.default_rng(0)
    x = np.zeros((64, 28, 28, 1), np.uint8)
    for image in x:
        for _ in range(3):
            r, c = rng.integers(6, 22, 2)
            image[r, c:c + rng.integers(4, 9)] = 255
    y = jnp.asarray(np.arange(64) % 10)
    recipe = mnist_speedrun(x, batch_size=64, widths=(8, 16, 16))
    state = recipe.initial_state(0)
    batch = jnp.asarray(x, jnp.float32) / 255.0

    def bias_grads(model):
        def loss(p):
            logits, _ = model.apply({"params": p, "batch_stats": state.batch_stats}, batch, train=True,
                                    mutable=["batch_stats"])
            return softmax_cross_entropy(logits, y, label_smoothing=0.2).mean()
        g = jax.jit(jax.grad(loss))(state.params)
        return {name: float(jnp.linalg.norm(g[name]["bias"])) for name in ("whiten", "block1_norm1")}

    f32 = bias_grads(recipe.model)
    bf16 = bias_grads(recipe.model.clone(dtype=jnp.bfloat16))
    for name in f32:
        assert f32[name] < 1.0 and bf16[name] == pytest.approx(f32[name], rel=0.25), (name, f32[name], bf16[name])


@pytest.mark.long
def test_tiny_run_through_fit_learns():
    """cifar10_speedrun through fit (recipe.fit_kwargs, finish, eval_kwargs) at tiny widths on two easy classes:
    the loss falls, test accuracy with the recipe's TTA beats chance, the whitening kernel stays where it was set
    and the parameters are the lookahead's last update."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 320).astype(np.int32)
    x = rng.integers(0, 100, (320, 17, 17, 3)).astype(np.uint8)
    x[y == 1, :, :, 0] += 120
    recipe = cifar10_speedrun(x[:256], epochs=4, batch_size=64, widths=(4, 8, 8))
    kwargs = recipe.fit_kwargs(seed=0)
    assert kwargs["seed"] == 0 and kwargs["optimizer"] is recipe.optimizer and kwargs["epochs"] == 4
    state, history = fit(recipe.model, (x[:256], y[:256]), **kwargs, loop="step", cpu_forms=False, progress=False)
    assert int(state.step) == recipe.total_steps == 16 and 16 % recipe.lookahead_every   # finish has work to do
    done = recipe.finish(state)
    slow = averaging.lookahead_state(state.opt_state).slow
    d = recipe.lookahead_decay
    np.testing.assert_allclose(done.params["head"]["kernel"],
                               d * slow["head"]["kernel"] + (1 - d) * state.params["head"]["kernel"], rtol=1e-6)
    assert history["loss"][-1] < history["loss"][0]
    assert evaluate(recipe.model, done, (x[256:], y[256:]), **recipe.eval_kwargs)["accuracy"] > 0.8   # chance 0.5
    np.testing.assert_array_equal(done.params["whiten"]["kernel"], recipe.whitening_kernel)


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=0), "batch_size=0 must be an int >= 1"),
    (dict(batch_size=4096), "batch_size=4096 is larger than the 64 training images"),
    (dict(widths=(8, 16)), r"widths=\(8, 16\) must be three ints"),
    (dict(epochs=1.5), "epochs=1.5 must be an int >= 1"),
    (dict(dtype="float64"), "dtype='float64' is not one of None, 'float32', 'bfloat16', 'float16'"),
    (dict(tta="mirror"), "tta='mirror' is not one of None, 'flip'"),
    (dict(whiten_sample="random"), "whiten_sample='random' is not one of 'spread', 'first'"),
    (dict(momentum=1.0), r"momentum=1.0 must lie in \[0, 1\)"),
    (dict(bn_epsilon=0.0), "bn_epsilon=0.0 must be a finite number > 0"),
    (dict(identity_init="no"), "identity_init='no' must be True or False"),
])
def test_bad_settings_name_the_setting(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cifar10_speedrun(_correlated_u8(), **kwargs)


def test_bad_images_and_unknown_settings():
    x = _correlated_u8()
    with pytest.raises(ValueError, match="cifar10_speedrun: train_images must be uint8"):
        cifar10_speedrun(x.astype(np.float32))
    with pytest.raises(ValueError, match=r"train_images must be NHWC .* got shape \(64, 8, 8, 3\)"):
        cifar10_speedrun(x[:, :8, :8])
    with pytest.raises(TypeError, match="mnist_speedrun: unknown setting 'lr_peak'"):
        mnist_speedrun(x[..., :1], lr_peak=1.0)
    with pytest.raises(ValueError, match="per-channel std is"):
        cifar10_speedrun(np.zeros_like(x), batch_size=32)


def _script(name):
    """The experiment script ``experiments/<name>.py`` as a module."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "experiments" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


@pytest.mark.long
def test_mnist_experiment_script_quick(tmp_path):
    import json

    script = _script("mnist_speedrun")
    out = tmp_path / "mnist.json"
    summary = script.main(["--quick", "--seeds", "0", "--loop", "step", "--set", "translate=1", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["info"]["dataset"] == "MNIST" and saved["info"]["target"] == 0.99 and len(saved["runs"]) == 1
    config = saved["runs"][0]["config"]
    assert config["flip"] is False and config["tta"] is None and config["translate"] == 1
    assert config["trainer"] == "fit" and saved["info"]["recipe"] == "mnist_speedrun"
    with pytest.raises(SystemExit, match="expected FIELD=VALUE"):
        script.main(["--quick", "--set", "lr"])
    with pytest.raises(SystemExit, match="unknown setting 'lr_peak'"):
        script.main(["--quick", "--set", "lr_peak=1.0"])
    assert summary["markdown"].startswith("MNIST speedrun recipe through fit")
    assert "seeds reach 99.00% (without TTA)" in summary["markdown"]
    assert 0.0 <= summary["test_acc_mean"] <= 1.0 and summary["train_seconds_mean"] > 0


@pytest.mark.long
def test_cifar_experiment_script_quick_bfloat16(tmp_path):
    import json

    script = _script("cifar_speedrun")
    out = tmp_path / "speedrun.json"
    summary = script.main(["--quick", "--dtype", "bfloat16", "--seeds", "0", "--loop", "step", "--tta-level", "1",
                           "--set", "whiten_sample=first", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["info"]["dtype"] == "bfloat16" and saved["info"]["tta"] == "flip" and len(saved["runs"]) == 1
    assert saved["runs"][0]["config"]["whiten_sample"] == "first"          # a bare word is a string
    assert 0.0 <= summary["test_acc_tta_mean"] <= 1.0 and "| mean ± std |" in summary["markdown"]


@pytest.mark.long
def test_precision_script_quick(tmp_path):
    import json

    script = _script("speedrun_precision")
    out = tmp_path / "precision.json"
    summary = script.main(["--quick", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["loss_scales"] == {"float32": 1.0, "bfloat16": 1.0, "float16_unscaled": 1.0, "float16": 32.0}
    assert len(saved["rows"]) == 14 and "whiten/kernel" not in {r["param"] for r in saved["rows"]}
    assert all(r["norm"] > 0 for r in saved["rows"])
    assert "| median |" in summary["markdown"] and "float16, loss x 32" in summary["markdown"]
