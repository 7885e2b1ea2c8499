"""The CIFAR-10 speedrun network (after Keller Jordan's airbench94, "94% on CIFAR-10 in 3.29 seconds on a single
GPU", 2024), written from the paper's description.

Layers, for a ``(batch, 32, 32, 3)`` input normalised per channel (shapes for the default widths)::

    whiten   2x2 conv, valid, 24 filters, with bias      32x32x3  -> 31x31x24   (kernel fixed, see below)
    GELU
    block 1  conv3x3 same -> maxpool 2 -> BN -> GELU -> conv3x3 same -> BN -> GELU   -> 15x15x64
    block 2  the same                                                                -> 7x7x256
    block 3  the same                                                                -> 3x3x256
    global max pool over space -> Dense(10, no bias) -> logits * scale (1/9)         -> 10

Other inputs work too: ``c`` channels get ``8c`` whitening filters (:func:`whiten_width`), and any size
``h, w >= 17`` (MNIST's 28x28x1: 27x27x8 -> 13x13 -> 6x6 -> 3x3; ``cnnjax.train.recipes.mnist_speedrun`` is its
recipe). With ``input_mean`` and ``input_std`` set (per channel, on the ``[0, 1]`` scale), the network first
normalises its input, ``(x - input_mean) / input_std`` in float32, so that it takes images as ``fit`` feeds them
(``uint8 / 255``); without them (the default) the input is used as given.

Each idea, and why:

* **Whitening first layer** (:func:`whitening_kernel`): the 2x2 conv's kernel holds the eigenvectors ``v_i`` of
  the covariance of the training images' 2x2x3 patches, scaled by ``1 / sqrt(lambda_i + eps)``, as ``+v`` and
  ``-v`` (12 + 12 = 24 filters). Why: the first layer starts out decorrelating the pixels, which the later layers
  would otherwise spend epochs learning; the kernel is never trained (the trainer freezes it), only its bias.
* **GELU** everywhere: trains faster than ReLU in this short regime.
* **Conv blocks, pool before BN**: 3x3 ``same`` convs without bias (BN follows), max pooling right after the
  first conv of each block: three downsamplings keep the FLOPs small (most work happens at 15x15 and below).
* **Identity ("dirac") init**: the first ``min(in, out)`` filters of every 3x3 conv start as the identity map
  (the rest uniform in ``+-1/sqrt(fan_in)``, PyTorch's default), so that each block starts near a pass-through and
  the signal reaches the head from the first step. Not for digits (``identity_init=False``, MNIST's recipe): a
  pass-through keeps the black background's near-constant channels unmixed, BatchNorm's tiny-std division then
  makes the gradients huge cancelling terms, and bfloat16 training fails.
* **BatchNorm** with momentum 0.6 (Keras convention, ``running = 0.6 * running + 0.4 * batch``: the running
  statistics follow the fast-moving weights of a ~100-step run), ``epsilon = 1e-12``, a trainable bias and no
  scale (``scale=False``; the scale is redundant before GELU + BN in the next layer, and without it the network
  has fewer parameters to tune).
* **Global max pool, bias-free Dense and a fixed logit scale** (``logit_scale = 1/9``): the small scale keeps the
  early softmax soft, which the label smoothing of the recipe then relies on.

Parameters (trainable): whitening bias ``24`` (its ``2*2*3*24 = 288`` kernel entries are frozen), block ``i``
with input ``c`` and width ``w``: ``9*c*w + 9*w*w + 2*w`` (two conv kernels, two BN biases), head ``w3 * 10``:
1,971,352 trainable parameters at the default widths (plus the 288 frozen ones, also in the ``"params"``
 collection, and ``4 * sum(widths)`` batch
statistics). ``dtype`` sets the computation dtype (``jnp.bfloat16`` on a GPU); parameters stay float32 and the
logits are returned in float32. The recipes that train it are in :mod:`cnnjax.train.recipes`.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cnnjax.layers import BatchNormalization, Conv2D, Dense, GlobalMaxPooling2D, MaxPooling2D

__all__ = ["SpeedrunNet", "speedrun", "whitening_kernel", "patch_covariance", "with_whitening",
           "identity_conv_init", "uniform_conv_init", "whiten_width", "WHITEN_WIDTH", "speedrun_mnist", "MNIST_WIDTHS"]

_PATCH = 2                   # the whitening conv's kernel size


def whiten_width(channels: int) -> int:
    """Filters of the whitening conv for ``channels`` input channels: ``+v`` and ``-v`` for each eigenvector of
    the ``2 * 2 * channels``-dimensional patch covariance (24 for RGB, 8 for grayscale)."""
    return 2 * _PATCH * _PATCH * channels


WHITEN_WIDTH = whiten_width(3)   # 24, the RGB network's


def patch_covariance(images) -> tuple:
    """Mean ``(4c,)`` and covariance ``(4c, 4c)`` of all 2x2 patches of ``images (n, h, w, c)`` (``4c = 12`` for
    RGB).

    A patch is flattened in the kernel's HWIO order, ``index = dy * 2 * c + dx * c + channel`` for ``dy, dx in
    {0, 1}``, so that ``patch @ kernel.reshape(4 * c, -1)`` is the valid 2x2 convolution at that position.
    ``cov = E[(p - mean)(p - mean)^T]`` over the ``n * (h - 1) * (w - 1)`` patches, computed in float32.
    """
    x = jnp.asarray(images).astype(jnp.float32)
    n, h, w, c = x.shape
    patches = jnp.stack([x[:, dy:h - 1 + dy, dx:w - 1 + dx, :] for dy in range(_PATCH) for dx in range(_PATCH)],
                        axis=-2).reshape(-1, _PATCH * _PATCH * c)
    mean = jnp.mean(patches, axis=0, keepdims=True)
    centred = patches - mean
    return mean[0], centred.T @ centred / patches.shape[0]


def whitening_kernel(images, eps: float = 5e-4) -> jax.Array:
    """The fixed ``(2, 2, c, 8c)`` HWIO kernel that whitens the 2x2 patches of ``images`` (``(2, 2, 3, 24)`` for
    RGB, ``(2, 2, 1, 8)`` for grayscale).

    ``images``: ``(n, h, w, c)``, any real dtype, exactly as the network receives them (the trainer passes the
    normalised training images; uint8 works and is taken as it is). With ``cov = V diag(lambda) V^T`` (the
    eigendecomposition of :func:`patch_covariance`), filter ``i < 4c`` is ``v_i / sqrt(lambda_i + eps)`` and
    filter ``4c + i`` is its negative, so that the first ``4c`` outputs of the conv have covariance
    ``diag(lambda / (lambda + eps))`` (the identity, up to ``eps``) over the patches. Filters are ordered by
    decreasing eigenvalue. ``eps > 0`` keeps near-constant directions (e.g. a flat region) from being blown up.
    """
    x = jnp.asarray(images)
    if x.ndim != 4 or x.shape[-1] < 1 or x.shape[1] < _PATCH or x.shape[2] < _PATCH or x.shape[0] < 1:
        raise ValueError(
            f"whitening_kernel: images must be an NHWC batch (n, h, w, c) with h, w >= 2, got shape "
            f"{tuple(x.shape)}.")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f"whitening_kernel: eps={eps!r} must be a number > 0, e.g. 5e-4.")
    _, cov = patch_covariance(x)
    eigenvalues, eigenvectors = jnp.linalg.eigh(cov)           # ascending
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
    scale = 1.0 / jnp.sqrt(jnp.maximum(eigenvalues, 0.0) + eps)
    filters = eigenvectors * scale[None, :]                   # column i: v_i / sqrt(lambda_i + eps)
    kernel = jnp.concatenate([filters, -filters], axis=1)
    c = x.shape[-1]
    return kernel.reshape(_PATCH, _PATCH, c, whiten_width(c))


def with_whitening(params, kernel):
    """A copy of ``params`` (the ``"params"`` collection of :class:`SpeedrunNet`) with the whitening kernel set."""
    kernel = jnp.asarray(kernel)
    old = params["whiten"]["kernel"]
    if kernel.shape != old.shape:
        raise ValueError(f"with_whitening: kernel shape {tuple(kernel.shape)} != the layer's {tuple(old.shape)}.")
    whiten = dict(params["whiten"], kernel=kernel.astype(old.dtype))
    return dict(params, whiten=whiten)


def uniform_conv_init(key, shape, dtype=jnp.float32):
    """PyTorch's default conv init: uniform in ``+-1/sqrt(fan_in)``, ``fan_in = kh * kw * in`` (HWIO ``shape``)."""
    kh, kw, cin, _ = shape
    bound = 1.0 / np.sqrt(kh * kw * cin)
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def identity_conv_init(key, shape, dtype=jnp.float32):
    """:func:`uniform_conv_init` with the first ``min(in, out)`` output filters replaced by the identity (a 1 at
    the centre tap of their own input channel)."""
    kh, kw, cin, cout = shape
    kernel = uniform_conv_init(key, shape, dtype)
    m = min(cin, cout)
    eye = jnp.zeros((kh, kw, cin, m), dtype).at[kh // 2, kw // 2].set(jnp.eye(cin, m, dtype=dtype))
    return kernel.at[..., :m].set(eye)


def _check_widths(widths, where: str) -> tuple:
    if (isinstance(widths, (str, bytes)) or not hasattr(widths, "__len__") or len(widths) != 3
            or any(isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 1 for w in widths)):
        raise ValueError(f"{where}: widths={widths!r} must be three ints >= 1 (one per block), e.g. (64, 256, 256).")
    return tuple(int(w) for w in widths)


def _normalised(x, mean, std):
    """``(x - mean) / std`` per channel (the last axis) in float32; ``x`` itself where both are None."""
    if mean is None and std is None:
        return x
    channels = x.shape[-1]
    values = []
    for name, v in (("input_mean", mean), ("input_std", std)):
        arr = np.asarray(v, np.float64) if v is not None else None
        if arr is None or arr.shape != (channels,) or not np.all(np.isfinite(arr)):
            raise ValueError(f"SpeedrunNet: {name}={v!r} must be {channels} finite floats, one per input channel "
                             f"(give input_mean and input_std together, or neither).")
        values.append(arr)
    if not np.all(values[1] > 0):
        raise ValueError(f"SpeedrunNet: input_std={std!r} must be > 0 in every channel.")
    shape = (1,) * (x.ndim - 1) + (channels,)
    return (jnp.asarray(x, jnp.float32) - values[0].astype(np.float32).reshape(shape)) / \
        values[1].astype(np.float32).reshape(shape)


class SpeedrunNet(nn.Module):
    """The airbench-style CIFAR network described in the module docstring.

    Attributes:
      widths: filters of the three conv blocks, default ``(64, 256, 256)``.
      num_classes: outputs of the bias-free head.
      logit_scale: the fixed factor on the logits (1/9 in the paper).
      bn_momentum, bn_epsilon: BatchNormalization's (Keras convention).
      identity_init: start the 3x3 convs as identity maps (:func:`identity_conv_init`, the default, as in the
        paper); ``False``: all filters :func:`uniform_conv_init` (the MNIST recipe's choice, see
        ``cnnjax.train.recipes.mnist_speedrun``).
      input_mean, input_std: per-channel floats (one per input channel, std > 0): the input is normalised as
        ``(x - input_mean) / input_std`` (in float32) before the first layer; None (both): no normalisation.
      dtype: computation dtype (``None``: float32; ``jnp.bfloat16`` for GPUs); parameters in ``param_dtype``.

    ``apply(variables, x, train)`` with ``x (batch, h, w, c)`` float (any ``c``; the whitening conv has
    ``8c`` filters, :func:`whiten_width`), ``h, w >= 17`` (three halvings after the 2x2 conv), returns float32
    logits ``(batch, num_classes)``. Parameter names: ``whiten``, ``block{i}_conv{j}``, ``block{i}_norm{j}``
    (i = 1..3, j = 1..2), ``head``.
    """

    widths: Sequence[int] = (64, 256, 256)
    num_classes: int = 10
    logit_scale: float = 1.0 / 9.0
    bn_momentum: float = 0.6
    bn_epsilon: float = 1e-12
    identity_init: bool = True
    input_mean: Sequence[float] | None = None
    input_std: Sequence[float] | None = None
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        widths = _check_widths(self.widths, "SpeedrunNet")
        if jnp.ndim(x) != 4 or min(x.shape[1:3]) < 17:
            raise ValueError(
                f"SpeedrunNet: input of shape {tuple(jnp.shape(x))}; it needs (batch, h, w, channels) with "
                f"h, w >= 17.")
        x = _normalised(x, self.input_mean, self.input_std)
        dtypes = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        conv = functools.partial(Conv2D, kernel_size=3, padding="same", use_bias=False,
                                 kernel_init=identity_conv_init if self.identity_init else uniform_conv_init,
                                 **dtypes)
        norm = functools.partial(BatchNormalization, momentum=self.bn_momentum, epsilon=self.bn_epsilon,
                                 scale=False, **dtypes)
        x = Conv2D(whiten_width(x.shape[-1]), _PATCH, padding="valid", use_bias=True, name="whiten", **dtypes)(x)
        x = nn.gelu(x)
        for i, width in enumerate(widths, start=1):
            x = conv(width, name=f"block{i}_conv1")(x)
            x = MaxPooling2D(2)(x)
            x = nn.gelu(norm(name=f"block{i}_norm1")(x, train=train))
            x = conv(width, name=f"block{i}_conv2")(x)
            x = nn.gelu(norm(name=f"block{i}_norm2")(x, train=train))
        x = GlobalMaxPooling2D()(x)
        x = Dense(self.num_classes, use_bias=False, name="head",
                  kernel_init=nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"), **dtypes)(x)
        return jnp.asarray(x, jnp.float32) * self.logit_scale


speedrun = functools.partial(SpeedrunNet, widths=(64, 256, 256))

MNIST_WIDTHS = (32, 64, 64)      # the MNIST recipe's (cnnjax.train.recipes.mnist_speedrun)
# The same network for 28x28x1 digits: 8 whitening filters, 27x27 -> 13x13 -> 6x6 -> 3x3, uniform init (see
# identity_init).
speedrun_mnist = functools.partial(SpeedrunNet, widths=MNIST_WIDTHS, identity_init=False)
