"""The speedrun network and recipe (CIFAR-10, and MNIST's grayscale variant): closed-form checks of each idea,
then tiny real training runs."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import functional as F
from cnnjax.models.speedrun import SpeedrunNet, identity_conv_init, whiten_width, whitening_kernel
from cnnjax.params import count_variables
from cnnjax.train.cpu_speed import loop_choice
from cnnjax.train.speedrun import (MNIST, SpeedrunConfig, alternating_flip, lookahead_decay_at, lookahead_update,
                                   loss_scale_of, lr_factor, make_optimizer, train_speedrun, translate,
                                   tta_logits, whitening_sample)

# the speedrun trainer's tests train real runs (10-55 s each on 2 cores): outside README's test command,
# run by `python -m pytest -q -n 2 -m long`
pytestmark = pytest.mark.long


def _patches_numpy(x):
    """All 2x2 patches of NHWC ``x``, flattened in HWIO order (dy, dx, channel), by explicit loops."""
    n, h, w, c = x.shape
    rows = []
    for dy in range(2):
        for dx in range(2):
            rows.append(x[:, dy:h - 1 + dy, dx:w - 1 + dx, :])
    return np.stack(rows, axis=-2).reshape(-1, 4 * c)


def _correlated_images(n=40, size=17, seed=0):
    """Images whose neighbouring pixels and channels are strongly correlated (a blurred, mixed noise field)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, size + 1, size + 1, 3))
    blurred = (z[:, :-1, :-1] + z[:, 1:, :-1] + z[:, :-1, 1:] + z[:, 1:, 1:]) / 2.0
    mix = np.array([[1.0, 0.8, 0.5], [0.0, 0.6, 0.4], [0.0, 0.0, 0.3]])
    return (blurred @ mix + 0.5).astype(np.float32)


def test_whitening_kernel_whitens_the_patches():
    x = _correlated_images()
    eps = 1e-3
    kernel = np.asarray(whitening_kernel(x, eps))
    assert kernel.shape == (2, 2, 3, 24)
    p = _patches_numpy(x.astype(np.float64))
    p = p - p.mean(axis=0)
    cov = p.T @ p / len(p)
    lam = np.sort(np.linalg.eigvalsh(cov))[::-1]
    assert lam[0] / lam[-1] > 20          # the input really is correlated
    y = p @ kernel.reshape(12, 24).astype(np.float64)
    y_cov = y[:, :12].T @ y[:, :12] / len(y)
    np.testing.assert_allclose(y_cov, np.diag(lam / (lam + eps)), atol=2e-3)
    np.testing.assert_allclose(y[:, 12:], -y[:, :12], atol=1e-6)


def test_whitening_kernel_of_grayscale_images():
    """One channel: 4-dim patches, 8 filters (+v, -v), the same whitening property."""
    x = _correlated_images()[..., :1]
    eps = 1e-3
    kernel = np.asarray(whitening_kernel(x, eps))
    assert kernel.shape == (2, 2, 1, 8) and whiten_width(1) == 8 and whiten_width(3) == 24
    p = _patches_numpy(x.astype(np.float64))
    p = p - p.mean(axis=0)
    lam = np.sort(np.linalg.eigvalsh(p.T @ p / len(p)))[::-1]
    y = p @ kernel.reshape(4, 8).astype(np.float64)
    np.testing.assert_allclose(y[:, :4].T @ y[:, :4] / len(y), np.diag(lam / (lam + eps)), atol=2e-3)
    np.testing.assert_allclose(y[:, 4:], -y[:, :4], atol=1e-6)


def test_whitening_kernel_layout_is_the_conv_layout():
    """The patch order of the kernel is the order the valid 2x2 convolution uses."""
    x = _correlated_images(n=3)
    kernel = whitening_kernel(x, 5e-4)
    conv = np.asarray(F.conv2d(jnp.asarray(x), kernel, None, padding="valid"))
    by_patches = _patches_numpy(x) @ np.asarray(kernel).reshape(12, 24)
    np.testing.assert_allclose(conv.reshape(-1, 24), by_patches, rtol=1e-4, atol=1e-4)


def test_identity_init_passes_the_input_through():
    kernel = np.asarray(identity_conv_init(jax.random.key(0), (3, 3, 4, 6)))
    x = np.random.default_rng(0).normal(size=(1, 5, 5, 4)).astype(np.float32)
    y = np.asarray(F.conv2d(jnp.asarray(x), jnp.asarray(kernel), None, padding="same"))
    np.testing.assert_allclose(y[..., :4], x, atol=1e-6)
    assert np.abs(kernel[..., 4:]).max() <= 1 / np.sqrt(9 * 4)


def test_shapes_and_parameter_count_by_hand():
    model = SpeedrunNet(widths=(4, 8, 8))
    x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    variables = jax.eval_shape(lambda v: model.init(jax.random.key(0), v), x)
    out = jax.eval_shape(lambda v, x: model.apply(v, x), variables, x)
    assert out.shape == (2, 10) and out.dtype == jnp.float32
    whiten = 2 * 2 * 3 * 24 + 24
    block1 = 3 * 3 * 24 * 4 + 3 * 3 * 4 * 4 + 2 * 4       # two bias-free convs, two BN biases (no BN scale)
    block2 = 3 * 3 * 4 * 8 + 3 * 3 * 8 * 8 + 2 * 8
    block3 = 3 * 3 * 8 * 8 + 3 * 3 * 8 * 8 + 2 * 8
    head = 8 * 10                                          # no bias
    assert count_variables(variables) == (whiten + block1 + block2 + block3 + head, 2 * 2 * (4 + 8 + 8))
    default = jax.eval_shape(lambda v: SpeedrunNet().init(jax.random.key(0), v), x)
    expected = (288 + 24 + (9 * 24 * 64 + 9 * 64 * 64 + 128) + (9 * 64 * 256 + 9 * 256 * 256 + 512)
                + (9 * 256 * 256 * 2 + 512) + 2560)
    assert count_variables(default)[0] == expected == 1_971_640


def test_bfloat16_network_returns_float32_logits():
    model = SpeedrunNet(widths=(4, 8, 8), dtype=jnp.bfloat16)
    x = jax.ShapeDtypeStruct((2, 17, 17, 3), jnp.float32)
    variables = jax.eval_shape(lambda v: model.init(jax.random.key(0), v), x)
    assert jax.eval_shape(lambda v, x: model.apply(v, x), variables, x).dtype == jnp.float32
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(variables))


def test_tta_logits_are_the_mean_over_the_views():
    """Against a fixed random linear map of the pixels (not mirror-invariant), view by view."""
    n, h, w = 3, 17, 17
    weights = jax.random.normal(jax.random.key(0), (h * w * 3, 10))
    x = jax.random.normal(jax.random.key(1), (n, h, w, 3))

    def f(v):
        return np.asarray(v).reshape(len(v), -1) @ np.asarray(weights)

    mirror, plain = f(x[:, :, ::-1, :]), f(x)
    np.testing.assert_allclose(tta_logits(f, x, 0), plain, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tta_logits(f, x, 1), (plain + mirror) / 2, rtol=1e-5, atol=1e-5)
    padded = np.pad(np.asarray(x), ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    up_left, down_right = padded[:, :h, :w], padded[:, 2:, 2:]
    pair = [(f(v) + f(v[:, :, ::-1])) / 2 for v in (up_left, down_right)]
    np.testing.assert_allclose(tta_logits(f, x, 2), (plain + mirror) / 4 + pair[0] / 4 + pair[1] / 4,
                               rtol=1e-5, atol=1e-5)
    for level in (1, 2):                       # the plain logits come from the same batch of views
        for mirrored in (True, False):
            both = tta_logits(f, x, level, mirror=mirrored, return_plain=True)
            np.testing.assert_allclose(both[0], tta_logits(f, x, level, mirror=mirrored), rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(both[1], plain, rtol=1e-5, atol=1e-5)
    # mirror=False (digits): no mirror views; level 1 is level 0, level 2 the translations only
    np.testing.assert_allclose(tta_logits(f, x, 1, mirror=False), plain, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tta_logits(f, x, 2, mirror=False),
                               plain / 2 + f(up_left) / 4 + f(down_right) / 4, rtol=1e-5, atol=1e-5)


def test_lookahead_two_steps_by_hand():
    slow, fast = {"w": jnp.array([1.0, -2.0])}, {"w": jnp.array([3.0, 2.0])}
    slow, fast = lookahead_update(slow, fast, 0.5)           # 0.5 * 1 + 0.5 * 3 = 2; 0.5 * -2 + 0.5 * 2 = 0
    np.testing.assert_allclose(slow["w"], [2.0, 0.0])
    np.testing.assert_allclose(fast["w"], [2.0, 0.0])
    fast = {"w": fast["w"] + jnp.array([2.0, 4.0])}          # SGD moves the fast weights to (4, 4)
    slow, fast = lookahead_update(slow, fast, 0.25)          # 0.25 * 2 + 0.75 * 4 = 3.5; 0.75 * 4 = 3
    np.testing.assert_allclose(slow["w"], [3.5, 3.0])
    np.testing.assert_allclose(fast["w"], [3.5, 3.0])
    np.testing.assert_allclose(lookahead_decay_at(50, 100, 0.8), 0.8 / 8)
    np.testing.assert_allclose(lookahead_decay_at(100, 100, 0.8), 0.8)
    assert float(lookahead_decay_at(0, 100, 0.8)) == 0.0


def test_lr_schedule_values():
    # 100 steps, warm-up over 25 from 0.2: 0.2 + 0.8 * s / 25, then (100 - s) / 75
    steps = jnp.array([0, 10, 25, 40, 100, 130])
    expected = [0.2, 0.2 + 0.8 * 10 / 25, 1.0, 60 / 75, 0.0, 0.0]
    np.testing.assert_allclose(lr_factor(steps, 100, 0.25, 0.2), expected, rtol=1e-6)
    # airbench94's warm-down ends at 0.07: 1 - 0.93 * (s - 25) / 75 after the warm-up, 0 past the last step
    expected = [0.2, 0.2 + 0.8 * 10 / 25, 1.0, 1 - 0.93 * 15 / 75, 0.07, 0.0]
    np.testing.assert_allclose(lr_factor(steps, 100, 0.25, 0.2, 0.07), expected, rtol=1e-6)
    assert SpeedrunConfig().end_factor == 0.07 and MNIST["end_factor"] == 0.0


def test_optimizer_groups_first_steps_by_hand():
    params = {"whiten": {"kernel": jnp.zeros((2,)), "bias": jnp.zeros((2,))},
              "block1_conv1": {"kernel": jnp.zeros((2,))}, "block1_norm1": {"bias": jnp.zeros((2,))}}
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    config = SpeedrunConfig(batch_size=1024, lr=11.5, momentum=0.85, weight_decay=0.0153, bias_lr_scale=64.0,
                            warmup=0.25, start_factor=0.2, whiten_bias_epochs=1)
    opt = make_optimizer(config, total_steps=100, steps_per_epoch=1)
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
    # weight decay alone (zero gradient, weights 1): the same shrink per step in every group
    ones = jax.tree_util.tree_map(jnp.ones_like, params)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    updates, _ = opt.update(zeros, opt.init(ones), ones)
    shrink = -0.0153 * 1024 / (1024 * (1 + 1 / 0.15)) * 0.2 * 1.85
    np.testing.assert_allclose(updates["block1_conv1"]["kernel"], shrink, rtol=1e-5)
    np.testing.assert_allclose(updates["block1_norm1"]["bias"], shrink, rtol=1e-5)


def test_optimizer_schedule_ends_at_the_end_factor():
    """At step ``total_steps`` the lr is ``end_factor`` of the peak (momentum 0 and no decay: the update is
    -lr * g)."""
    params = {"block1_conv1": {"kernel": jnp.zeros((2,))}}
    grads = {"block1_conv1": {"kernel": jnp.ones((2,))}}
    lr = 11.5 * 1024 / 2048                     # kilostep = 1024 * (1 + 1 / (1 - 0)) = 2048
    for end in (0.07, 0.5):
        config = SpeedrunConfig(momentum=0.0, weight_decay=0.0, warmup=0.25, end_factor=end)
        opt = make_optimizer(config, total_steps=4, steps_per_epoch=4)
        state = opt.init(params)
        for _ in range(5):                      # steps 0..4; step 4 = total_steps, the schedule's end
            updates, state = opt.update(grads, state, params)
        np.testing.assert_allclose(updates["block1_conv1"]["kernel"], -lr * end, rtol=1e-5)


def test_translate_and_alternating_flip():
    x = jnp.arange(4 * 6 * 6 * 1, dtype=jnp.int32).reshape(4, 6, 6, 1).astype(jnp.uint8)
    out = np.asarray(translate(jax.random.key(3), x, 2))
    padded = np.pad(np.asarray(x), ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")
    for i in range(4):
        crops = [padded[i, dy:dy + 6, dx:dx + 6] for dy in range(5) for dx in range(5)]
        assert any(np.array_equal(out[i], c) for c in crops)
    bits = jnp.array([True, False, False, True])
    even, odd = np.asarray(alternating_flip(x, bits, 0)), np.asarray(alternating_flip(x, bits, 3))
    mirrored = np.asarray(x)[:, :, ::-1]
    for i, b in enumerate([True, False, False, True]):
        np.testing.assert_array_equal(even[i], mirrored[i] if b else np.asarray(x)[i])
        np.testing.assert_array_equal(odd[i], np.asarray(x)[i] if b else mirrored[i])


def _two_easy_classes(n, seed=0):
    """Class 1 has a bright red channel, class 0 does not; noise elsewhere."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(np.int32)
    x = rng.integers(0, 100, (n, 32, 32, 3)).astype(np.uint8)
    x[y == 1, :, :, 0] += 120
    return x, y


def test_whitening_sample_spreads_over_a_class_sorted_set():
    labels = np.repeat(np.arange(10), 50)                 # 500 "images" sorted by class, as the JPEG copy is
    images = labels.reshape(-1, 1, 1, 1)
    spread = np.asarray(whitening_sample(images, 100)).ravel()
    assert np.bincount(spread, minlength=10).tolist() == [10] * 10          # every 5th image: 10 per class
    assert np.asarray(whitening_sample(images, 100, "first")).ravel().tolist() == [0] * 50 + [1] * 50
    assert whitening_sample(images, 600).shape[0] == 500                     # fewer than asked for: all of them
    for count in (300, 150, 37):                   # counts that do not divide 500 reach the last classes too
        per_class = np.bincount(np.asarray(whitening_sample(images, count)).ravel(), minlength=10)
        assert per_class.sum() == count and per_class.max() - per_class.min() <= 1, (count, per_class)
    with pytest.raises(ValueError, match="how='random' is not one of 'spread', 'first'"):
        whitening_sample(images, 10, "random")


def _whitening_matrix(kernel):
    """``V diag(1 / (lambda + eps)) V^T`` from a whitening kernel's first 4c filters: free of the eigenvectors'
    signs (which swap a filter with its negative)."""
    w = np.asarray(kernel).reshape(-1, np.asarray(kernel).shape[-1])[:, :np.asarray(kernel).shape[-1] // 2]
    return w @ w.T


def test_the_trainer_whitens_with_the_sample_it_is_told():
    x, y = _two_easy_classes(256 + 64)
    order = np.argsort(y[:256], kind="stable")           # sorted by class: the first 32 images are all class 0
    xs, ys = x[:256][order], y[:256][order]
    assert ys[:32].max() == 0 and set(ys[::8][:32].tolist()) == {0, 1}
    kwargs = dict(epochs=1, batch_size=64, widths=(4, 8, 8), tta_level=0, whiten_images=32, seed=0, loop="step")
    found = {}
    for how, sample in (("first", xs[:32]), ("spread", xs[::8][:32])):
        run = train_speedrun(xs, ys, x[256:], y[256:], whiten_sample=how, **kwargs)
        found[how] = _whitening_matrix(run["state"].params["whiten"]["kernel"])
        sub = sample.astype(np.float64) / 255.0
        by_hand = whitening_kernel(((sub - sub.mean((0, 1, 2))) / sub.std((0, 1, 2))).astype(np.float32), 5e-4)
        np.testing.assert_allclose(found[how], _whitening_matrix(by_hand), rtol=2e-3, atol=1e-2)
    # class 1's bright red channel is missing from the first 32: the two whitenings differ
    assert np.abs(found["first"] - found["spread"]).max() > 0.1 * np.abs(found["spread"]).max()


def test_grayscale_shapes_and_parameter_count_by_hand():
    """MNIST's 28x28x1: 8 whitening filters (2*2*1*8 frozen kernel entries + 8 biases), 27 -> 13 -> 6 -> 3."""
    model = SpeedrunNet(widths=(4, 8, 8))
    x = jax.ShapeDtypeStruct((2, 28, 28, 1), jnp.float32)
    variables = jax.eval_shape(lambda v: model.init(jax.random.key(0), v), x)
    out = jax.eval_shape(lambda v, x: model.apply(v, x), variables, x)
    assert out.shape == (2, 10)
    assert variables["params"]["whiten"]["kernel"].shape == (2, 2, 1, 8)
    whiten = 2 * 2 * 1 * 8 + 8
    block1 = 3 * 3 * 8 * 4 + 3 * 3 * 4 * 4 + 2 * 4
    block2 = 3 * 3 * 4 * 8 + 3 * 3 * 8 * 8 + 2 * 8
    block3 = 3 * 3 * 8 * 8 + 3 * 3 * 8 * 8 + 2 * 8
    assert count_variables(variables) == (whiten + block1 + block2 + block3 + 8 * 10, 2 * 2 * (4 + 8 + 8))


def _two_easy_grayscale_classes(n, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(np.int32)
    x = rng.integers(0, 100, (n, 28, 28, 1)).astype(np.uint8)
    x[y == 1] += 120                      # class 1: brighter
    return x, y


def test_mnist_recipe_trains_grayscale_images():
    """The MNIST preset (no flips, no TTA) on 28x28x1 images, at tiny widths: it learns, and never mirrors."""
    assert MNIST["flip"] is False and MNIST["tta_level"] == 0
    x, y = _two_easy_grayscale_classes(512 + 128)
    result = train_speedrun(x[:512], y[:512], x[512:], y[512:], seed=0,
                            **dict(MNIST, epochs=3, batch_size=128, widths=(8, 16, 16)))
    assert result["config"]["flip"] is False and result["steps"] == 12
    assert result["test_acc"] > 0.8 and result["test_acc_tta"] == result["test_acc"]    # chance: 0.5


def _stroke_digits(n, seed=0):
    """Digit-like 28x28x1 uint8 images: a black background with three white strokes (MNIST's statistics:
    most pixels are exactly 0)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 28, 28, 1), np.uint8)
    for image in x:
        for _ in range(3):
            r, c = rng.integers(6, 22, 2)
            length = rng.integers(4, 9)
            if rng.random() < 0.5:
                image[r, c:c + length] = 255
            else:
                image[r:r + length, c] = 255
    return x, (np.arange(n) % 10).astype(np.int32)


def _init_bias_gradients(x, y, **overrides):
    """{name: norm of the bias gradient} of the first batch at init, for the MNIST preset with ``overrides``.
    Jitted, as training is, with plain ``lax`` ops (as ``_init_gradients``: they compile faster, and the
    cancellation studied here is the same in every form)."""
    from cnnjax.train.speedrun import _normalise, _Recipe

    recipe = _Recipe(SpeedrunConfig(**dict(MNIST, widths=(8, 16, 16), **overrides)), len(x))
    state = jax.jit(recipe.init)(jax.random.key(0), jnp.zeros((1, 28, 28, 1), recipe.dtype))
    state, mean, std = jax.jit(recipe.prepare)(state, jnp.asarray(x))
    batch = _normalise(jnp.asarray(x), mean, std, recipe.dtype)
    loss = lambda p, b: recipe.loss(p, state.batch_stats, b, jnp.asarray(y))[0]      # noqa: E731
    grads = jax.jit(jax.grad(loss))(state.params, batch)
    return {name: float(jnp.linalg.norm(grads[name]["bias"])) for name in ("whiten", "block1_norm1",
                                                                         "block2_norm1")}


def test_mnist_recipe_bfloat16_gradients_track_float32():
    """On digit-like images (black background), identity-initialised 3x3 convs pass the background's
    near-constant channels through every block unmixed; BatchNorm (epsilon 1e-12) then divides them by a tiny
    std, and the first layers' gradients are huge terms that cancel, which bfloat16 cannot do: its gradient was
    orders of magnitude off float32's and the full bfloat16 MNIST run went to chance. The MNIST recipe starts
    from PyTorch's uniform init instead, where the gradients are small and bfloat16 tracks float32."""
    assert MNIST["identity_init"] is False
    x, y = _stroke_digits(128)
    f32 = _init_bias_gradients(x, y)
    bf16 = _init_bias_gradients(x, y, dtype="bfloat16")
    for name in f32:
        assert f32[name] < 1.0, (name, f32[name])
        assert bf16[name] == pytest.approx(f32[name], rel=0.25), (name, f32[name], bf16[name])
    # The cause, shown: with the identity init (CIFAR's default) the same gradients blow up.
    identity = _init_bias_gradients(x, y, identity_init=True)
    assert identity["whiten"] > 1e3 * f32["whiten"]


def _init_gradients(x, y, variants, widths=(8, 16, 16)):
    """For each dict of config overrides in ``variants``: the float32 gradients (flat ``{path: array}``, the
    frozen whitening kernel left out) of the first batch, all from the same initial state (parameters are
    float32 in every dtype). Traced with plain ``lax`` ops: the CPU's batch-chunked kernel gradients compile
    several times slower, and the rounding studied here is the same in every form."""
    from cnnjax.train.speedrun import _normalise, _Recipe

    base = dict(widths=widths, batch_size=len(x))
    out = []
    first = _Recipe(SpeedrunConfig(**base), len(x))
    state = jax.jit(first.init)(jax.random.key(0), jnp.zeros((1, *x.shape[1:]), jnp.float32))
    state, mean, std = jax.jit(first.prepare)(state, jnp.asarray(x))
    for overrides in variants:
        recipe = _Recipe(SpeedrunConfig(**base, **overrides), len(x))
        batch = _normalise(jnp.asarray(x), mean, std, recipe.dtype)
        _, grads = jax.jit(recipe.grad)(state.params, state.batch_stats, batch, jnp.asarray(y))
        out.append({f"{layer}/{name}": np.asarray(g, np.float64) for layer, leaves in grads.items()
                    for name, g in leaves.items() if (layer, name) != ("whiten", "kernel")})
    return out


def _cifar_like(n=256, size=20):
    x = np.clip(_correlated_images(n=n, size=size, seed=1) * 120 + 60, 0, 255).astype(np.uint8)
    return x, (np.arange(n) % 10).astype(np.int32)


def test_loss_scale_defaults():
    assert loss_scale_of(SpeedrunConfig(dtype="float16")) == 1024.0      # batch_size: the summed loss
    assert loss_scale_of(SpeedrunConfig(dtype="float16", batch_size=512)) == 512.0
    assert loss_scale_of(SpeedrunConfig(dtype="float16", batch_size=1000)) == 512.0   # a power of two
    assert loss_scale_of(SpeedrunConfig(dtype="bfloat16")) == 1.0
    assert loss_scale_of(SpeedrunConfig()) == 1.0
    assert loss_scale_of(SpeedrunConfig(dtype="float16", loss_scale=8.0)) == 8.0


def test_power_of_two_loss_scale_changes_no_float32_rounding():
    x, y = _cifar_like(n=64, size=17)
    plain, scaled = _init_gradients(x, y, [{}, dict(loss_scale=1024.0)], widths=(4, 8, 8))
    for name in plain:
        np.testing.assert_array_equal(scaled[name], plain[name], err_msg=name)


def test_float16_loss_scale_keeps_the_small_gradients():
    """float16's smallest normal number is 6e-5: the batch-mean loss's backward signals (~1/batch of the summed
    loss's) fall into its subnormals, where few bits are left, and the later BatchNorm biases' gradients come
    out 15-20% off float32's (measured). The default scale (the batch size) lifts them back: ~2% off."""
    x, y = _cifar_like()
    exact, unscaled, scaled = _init_gradients(x, y, [{}, dict(dtype="float16", loss_scale=1.0),
                                                     dict(dtype="float16")])

    def error(g, name):
        return np.linalg.norm(g[name] - exact[name]) / np.linalg.norm(exact[name])

    for name in ("block2_norm1/bias", "block2_norm2/bias"):
        assert error(unscaled, name) > 0.1, (name, error(unscaled, name))
        assert error(scaled, name) < error(unscaled, name) / 4, (name, error(scaled, name), error(unscaled, name))
    for name in exact:
        if name != "whiten/bias":   # a sum of cancelling terms, far off f32's in every low precision
            assert error(scaled, name) <= 1.1 * error(unscaled, name), name


def test_float16_training_run():
    """float16 end to end: the default loss scale (the batch), unscaled losses that fall, finite weights."""
    x, y = _two_easy_classes(256 + 64)
    result = train_speedrun(x[:256], y[:256], x[256:], y[256:], epochs=3, batch_size=64, widths=(8, 16, 16),
                            tta_level=0, dtype="float16", loop="step", seed=0)
    assert result["loss_scale"] == 64.0 and result["config"]["dtype"] == "float16"
    losses = result["train_loss"]
    assert losses[-1] < losses[0] < np.log(10) + 0.1      # the batch-mean loss, not the scaled one
    leaves = jax.tree_util.tree_leaves(result["state"].params)
    assert all(leaf.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(leaf))) for leaf in leaves)
    assert result["test_acc"] > 0.8                       # chance: 0.5


def test_uniform_init_has_no_identity_filters():
    net = SpeedrunNet(widths=(8, 8, 8), identity_init=False)
    params = net.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))["params"]
    kernel = np.asarray(params["block2_conv2"]["kernel"])          # 8 -> 8: all identity by default
    assert np.abs(kernel).max() <= 1 / np.sqrt(9 * 8)
    assert not np.allclose(kernel[1, 1, :, :], np.eye(8))
    default = SpeedrunNet(widths=(8, 8, 8)).init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))["params"]
    np.testing.assert_array_equal(np.asarray(default["block2_conv2"]["kernel"])[1, 1], np.eye(8))


def test_fast_weights_train_between_lookahead_steps():
    """Every step applies its SGD update to the fast weights; only every lookahead_every-th step moves the slow
    weights and resets the fast ones to them. (A reset on every step once kept the weights still between
    lookahead steps: one update in five.)"""
    from cnnjax.train.speedrun import _Data, _Recipe

    x, y = _two_easy_classes(64)
    config = SpeedrunConfig(epochs=1, batch_size=8, widths=(4, 8, 8), lookahead_every=3)
    recipe = _Recipe(config, len(x))
    leaf = lambda tree: np.asarray(tree["head"]["kernel"])     # noqa: E731
    history = []
    state = jax.jit(recipe.init)(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    state, mean, std = jax.jit(recipe.prepare)(state, jnp.asarray(x))
    data = _Data(jnp.asarray(x), jnp.asarray(y), jnp.zeros(len(x), bool), mean, std)
    step = jax.jit(recipe.step)
    for i in range(3):
        before = state
        state = step(state, data, jnp.arange(len(x)), jnp.int32(i), jnp.int32(0), jax.random.key(1))
        history.append((leaf(before.params), leaf(state.params), leaf(before.slow[0]), leaf(state.slow[0])))
    for fast_before, fast_after, slow_before, slow_after in history[:2]:      # steps 1 and 2: no lookahead
        assert not np.allclose(fast_after, fast_before)                      # the fast weights trained
        np.testing.assert_array_equal(slow_after, slow_before)               # the slow ones stayed
    *_, slow_before, slow_after = history[2]                                  # step 3: lookahead
    assert not np.allclose(slow_after, slow_before)
    np.testing.assert_array_equal(history[2][1], slow_after)                  # fast reset to the slow weights


def test_tiny_training_run_learns(capsys):
    x, y = _two_easy_classes(512 + 128)
    result = train_speedrun(x[:512], y[:512], x[512:], y[512:], epochs=4, batch_size=128, widths=(8, 16, 16),
                            tta_level=1, seed=0, progress=True, reuse_compiled=False)
    assert result["steps"] == 16 and result["loop"] in ("step", "scan")
    probe = result["loop_probe"]                     # loop="auto" timed both forms and ran the faster
    assert probe["chosen"] == result["loop"] == loop_choice.choose(probe)
    assert probe["step"] > 0 and probe["scan"] > 0 and 2 <= probe["steps"] <= 4
    err = capsys.readouterr().err                    # progress=True shows the probe, then one line per epoch
    assert f"loop='auto' measured {probe['step']:,.0f} images/s per step" in err
    assert f"using {result['loop']!r}" in err and err.count("epoch ") == 4
    losses = result["train_loss"]
    assert losses[-1] < losses[0] < np.log(10) + 0.1
    assert result["test_acc"] > 0.8 and result["test_acc_tta"] > 0.8      # chance: 0.5
    assert {"train_seconds", "eval_seconds", "total_seconds"} <= set(result)   # airbench94's clock: both
    assert result["loss_scale"] == 1.0


def test_later_runs_reuse_the_compiled_executables_warm_and_give_the_same_weights(capsys):
    x, y = _two_easy_classes(256 + 64)
    split = (x[:256], y[:256], x[256:], y[256:])
    kwargs = dict(epochs=1, batch_size=64, widths=(4, 8, 8), tta_level=1, lr=3.0, seed=2)  # no other test's config
    first = train_speedrun(*split, **kwargs)                                   # loop="auto": probes
    again = train_speedrun(*split, progress=True, **kwargs)
    fresh = train_speedrun(*split, loop=first["loop"], reuse_compiled=False, **kwargs)
    assert (first["warm"], again["warm"], fresh["warm"]) == (False, True, False)
    assert "reused" not in first["loop_probe"] and again["loop_probe"]["reused"] is True
    assert again["loop"] == first["loop"] and fresh["loop_probe"] is None
    assert f"{first['loop']!r}, as measured by an earlier run" in capsys.readouterr().err
    # The other loop form is warm only where the probe ran its executables: the per-step ones always, the scan
    # only if the probe's scan had this run's 4 steps.
    other_loop = "scan" if first["loop"] == "step" else "step"
    other = train_speedrun(*split, loop=other_loop, **kwargs)
    assert other["warm"] is (other_loop == "step" or first["loop_probe"]["steps"] == 4)
    for run in (again, fresh):                        # reused or compiled afresh: the same function of the seed
        for a, b in zip(jax.tree_util.tree_leaves(first["state"].params), jax.tree_util.tree_leaves(run["state"].params)):
            np.testing.assert_array_equal(a, b)
        assert run["test_acc_tta"] == first["test_acc_tta"]


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=0), "batch_size=0"),
    (dict(batch_size=4096), "batch_size=4096"),
    (dict(widths=(8, 16)), "widths="),
    (dict(epochs=0), "epochs=0"),
    (dict(loop="fast"), "loop='fast'"),
    (dict(dtype="float64"), "dtype='float64'"),
    (dict(tta_level=3), "tta_level=3"),
    (dict(whiten_sample="random"), "whiten_sample='random' is not one of 'spread', 'first'"),
    (dict(momentum=1.0), "momentum=1.0"),
    (dict(label_smoothing=1.0), "label_smoothing=1.0"),
    (dict(bn_epsilon=0.0), "bn_epsilon=0.0 must be > 0"),
    (dict(identity_init="no"), "identity_init='no' must be True or False"),
    (dict(loss_scale=-1.0), "loss_scale=-1.0 must be a finite number >= 0"),
    (dict(loss_scale=float("nan")), "loss_scale=nan must be a finite number >= 0"),
    (dict(loss_scale=float("inf")), "loss_scale=inf must be a finite number >= 0"),
])
def test_bad_arguments_raise_value_errors(kwargs, match):
    x, y = _two_easy_classes(64)
    with pytest.raises(ValueError, match=match):
        train_speedrun(x, y, x, y, **kwargs)


def test_bad_data_raises_value_errors():
    x, y = _two_easy_classes(64)
    with pytest.raises(ValueError, match="train_images must be uint8"):
        train_speedrun(x.astype(np.float32), y, x, y)
    with pytest.raises(ValueError, match="test_images must be NHWC"):
        train_speedrun(x, y, x[:, :8, :8], y)
    with pytest.raises(ValueError, match="train_labels must lie in"):
        train_speedrun(x, y + 9, x, y)
    with pytest.raises(TypeError, match="unknown argument 'lr_peak'"):
        train_speedrun(x, y, x, y, lr_peak=1.0)
    with pytest.raises(ValueError, match="eps=0"):
        whitening_kernel(x, eps=0)
    with pytest.raises(ValueError, match="whitening_kernel: images"):
        whitening_kernel(x[:, :1])
    with pytest.raises(ValueError, match="test_images have 1 channels and train_images 3"):
        train_speedrun(x, y, x[..., :1], y)


@pytest.mark.slow
def test_scan_epoch_matches_the_step_loop():
    """loop="scan" (one jitted lax.scan per epoch) and loop="step" draw the same batches and give the same weights."""
    x, y = _two_easy_classes(256 + 64)
    kwargs = dict(epochs=1.5, batch_size=64, widths=(4, 8, 8), tta_level=0, seed=1)
    scan = train_speedrun(x[:256], y[:256], x[256:], y[256:], loop="scan", **kwargs)
    step = train_speedrun(x[:256], y[:256], x[256:], y[256:], loop="step", **kwargs)
    assert scan["steps"] == step["steps"] == 6 and scan["loop"] == "scan"
    assert scan["loop_probe"] is None and step["loop_probe"] is None     # a loop asked for is not timed
    for a, b in zip(jax.tree_util.tree_leaves(scan["state"].params), jax.tree_util.tree_leaves(step["state"].params)):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-4)
    np.testing.assert_allclose(scan["train_loss"], step["train_loss"], rtol=1e-4)


def _script(name):
    """The experiment script ``experiments/<name>.py`` as a module."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "experiments" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


@pytest.mark.slow
def test_mnist_experiment_script_quick(tmp_path):
    import json

    script = _script("mnist_speedrun")
    out = tmp_path / "mnist.json"
    summary = script.main(["--quick", "--seeds", "0", "1", "--set", "translate=1", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["info"]["dataset"] == "MNIST" and saved["info"]["target"] == 0.99 and len(saved["runs"]) == 2
    config = saved["runs"][0]["config"]
    assert config["flip"] is False and config["tta_level"] == 0 and config["translate"] == 1
    with pytest.raises(SystemExit, match="expected FIELD=VALUE"):
        script.main(["--quick", "--set", "lr"])
    with pytest.raises(SystemExit, match="neither a Python literal"):
        script.main(["--quick", "--set", "widths=(8, 16"])
    assert summary["markdown"].startswith("MNIST speedrun")
    assert "seeds reach 99.00% (without TTA)" in summary["markdown"]
    assert 0.0 <= summary["test_acc_mean"] <= 1.0 and summary["train_seconds_mean"] > 0


@pytest.mark.slow
def test_experiment_script_quick_bfloat16(tmp_path):
    import json

    script = _script("cifar_speedrun")
    out = tmp_path / "speedrun.json"
    summary = script.main(["--quick", "--dtype", "bfloat16", "--seeds", "0", "--set", "whiten_sample=first",
                           "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["info"]["dtype"] == "bfloat16" and len(saved["runs"]) == 1
    assert saved["runs"][0]["config"]["whiten_sample"] == "first"          # a bare word is a string
    assert 0.0 <= summary["test_acc_tta_mean"] <= 1.0 and "| mean ± std |" in summary["markdown"]


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
