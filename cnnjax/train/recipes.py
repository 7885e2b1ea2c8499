"""Recipes: everything `fit` needs to train a model one known way, as one frozen object.

    recipe = cifar10_speedrun(x_train_u8, epochs=11, dtype="bfloat16")     # reads the images once (whitening)
    state, history = fit(recipe.model, (x_train_u8, y_train), **recipe.fit_kwargs(seed=0))
    state = recipe.finish(state)                                          # the last lookahead update
    evaluate(recipe.model, state, (x_test_u8, y_test), **recipe.eval_kwargs)["accuracy"]

or, the same in one call with timings, :func:`run_recipe` ``(recipe, (x_train, y_train), (x_test, y_test),
seed=0)``. A recipe does not depend on the seed: the seed goes to :meth:`Recipe.fit_kwargs` (the initial
weights, the data order and the augmentations).

**The CIFAR-10 speedrun** (:func:`cifar10_speedrun`; Keller Jordan's airbench94, "94% on CIFAR-10 in 3.29
seconds on a single GPU", 2024, written from the paper's description) for
:class:`cnnjax.models.airbench.SpeedrunNet`. Every hyperparameter is a field of :class:`SpeedrunSettings`, with
its unit. The ideas, each with why:

* **Normalisation** per channel with the mean and std (on the ``[0, 1]`` scale) of ``whiten_images`` training
  images, done by the model itself (``SpeedrunNet(input_mean=, input_std=)``), so that it takes ``fit``'s
  ``uint8 / 255`` images.
* **Whitening first layer**: its 2x2 kernel is computed from the same normalised images
  (:func:`cnnjax.models.airbench.whitening_kernel`; the images spread over the set, :func:`whitening_sample`,
  since the JPEG copy is sorted by class) and frozen (its optimizer group is ``optax.set_to_zero``): the network
  starts with decorrelated inputs. Its **bias** trains for the first ``whiten_bias_epochs`` epochs only (its
  learning rate is then 0): it moves the whitened features to where GELU is useful early on. The kernel reaches
  ``fit`` through ``initial_state`` (:meth:`Recipe.initial_state`: the seed's initial weights with the kernel
  set, and the optimizer's state initialised on them).
* **Augmentation** inside ``fit``'s step: random horizontal flips (``p = 1/2`` per image and step) and a random
  **translation** by up to ``translate`` pixels with reflect padding (``augment="flip,translate:2"``,
  :mod:`cnnjax.functional.augment`). airbench94 flips *alternately* (each image a random bit once, mirrored in
  epoch ``e`` iff ``bit XOR (e odd)``); ``fit``'s augmentation sees a key and a batch, not the epoch or the rows,
  so the recipe draws fresh flips (experiments/SPEED.md, "the speedrun as a recipe", measures the difference).
* **Label smoothing** 0.2: stops the network from growing over-confident in the few epochs it gets.
* **Nesterov SGD** (momentum 0.85) on the batch-mean loss, with **lr-decoupled weight decay**: the decay added
  to the gradient of a group with peak rate ``lr_g`` is ``decay / lr_g``, so that the weights shrink by
  ``schedule(t) * decay`` per step whatever the group's rate. **BatchNorm biases learn ``bias_lr_scale`` (64)
  times faster** (with 64 times less decay): the network has no BN scales and the biases are its only
  per-channel knobs. Four groups (:func:`param_labels`) through ``optax.multi_transform``.
* **Triangular learning-rate schedule** (:func:`lr_factor`): linear from ``start_factor`` to 1 over the first
  ``warmup`` of the steps, then linear down to ``end_factor`` at the end.
* **Lookahead** (:func:`cnnjax.train.averaging.lookahead` with :func:`cnnjax.train.averaging.cubic_lookahead_alpha`):
  every ``lookahead_every`` steps the slow weights become ``d * slow + (1 - d) * fast`` and the fast weights are
  reset to them, ``d = lookahead_decay * (t / T) ** 3`` growing from 0, so that it averages only at the end of
  training. :meth:`Recipe.finish` makes the last update where the run does not end on a multiple of
  ``lookahead_every``. airbench94 also averages the BatchNorm statistics this way; the optimizer never sees
  them, so here they are the running statistics of the fast weights (which lookahead resets to the slow ones
  every ``lookahead_every`` steps).
* **Test-time augmentation** ``"flip_translate"`` (airbench94's level 2, :mod:`cnnjax.train.tta`): the mean of the
  logits of each image and its mirror, weight 1/2, and of its one-pixel translations up-left and down-right (each
  with its mirror), 1/4 each.
* **Precision**: ``dtype="bfloat16"`` or ``"float16"`` computes the network in that dtype (parameters, optimizer
  state, loss and gradients stay float32); float16 gets ``fit``'s static loss scale (the batch size rounded
  down to a power of two, :func:`cnnjax.train.steps.loss_scale_for`), as airbench94 computes the summed loss.

The units: ``kilostep = 1024 * (1 + 1 / (1 - momentum))`` (1024 examples times the momentum's gain); the peak
learning rate of the weights is ``lr * batch_size / kilostep`` (1.5 at batch 1024) and the weights shrink by
``weight_decay * batch_size / kilostep * schedule(t)`` per step.

**The MNIST speedrun** (:func:`mnist_speedrun`, the zoo's ``speedrun_mnist`` network): the same recipe with
:data:`MNIST` over it: widths (32, 64, 64), batch 512, 1 epoch, 2-pixel translations, no flips and no test-time
augmentation (a mirrored digit is another digit), PyTorch's uniform conv init (no identity init: on digits it
passes the black background's near-constant channels through every block and bfloat16 training fails), and the
schedule ending at 0.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cnnjax.models.airbench import MNIST_WIDTHS, SpeedrunNet, whitening_kernel, with_whitening
from cnnjax.sampling import spread_indices

from . import averaging
from .trainer import evaluate, fit
from .state import TrainState, create_state
from .tta import TTA_MODES

__all__ = ["SpeedrunSettings", "Recipe", "cifar10_speedrun", "mnist_speedrun", "speedrun_recipe", "run_recipe",
           "lr_factor", "param_labels", "speedrun_optimizer", "whitening_sample", "input_statistics", "MNIST",
           "DTYPES", "WHITEN_SAMPLES"]

DTYPES = ("float32", "bfloat16", "float16")
WHITEN_SAMPLES = ("spread", "first")


@dataclasses.dataclass(frozen=True)
class SpeedrunSettings:
    """Every hyperparameter of the speedrun recipe, with its unit (defaults: airbench94's, but 11 epochs, the
    setting that reached its accuracy on the CPU; experiments/SPEED.md)."""

    epochs: int = 11                  # passes over the training set (the last n % batch_size rows of each dropped)
    batch_size: int = 1024            # images per step
    lr: float = 11.5                  # per kilostep (module docstring)
    momentum: float = 0.85            # Nesterov momentum
    weight_decay: float = 0.0153      # per kilostep (module docstring)
    bias_lr_scale: float = 64.0       # BN biases: lr x this, decay coefficient / this
    label_smoothing: float = 0.2      # mass spread uniformly over the classes
    warmup: float = 0.23              # fraction of the steps of linear warm-up
    start_factor: float = 0.2         # lr factor at step 0
    end_factor: float = 0.07          # lr factor at the last step
    whiten_bias_epochs: float = 3.0   # epochs during which the whitening bias trains
    whiten_eps: float = 5e-4          # added to the patch eigenvalues (normalised-pixel units squared)
    whiten_images: int = 5000         # training images for the whitening and normalisation statistics
    whiten_sample: str = "spread"     # "spread": rows spread evenly over the set; "first": the first ones
    translate: int = 2                # pixels of random translation (reflect padding)
    flip: bool = True                 # random horizontal flips (and the mirror views at test time)
    lookahead_every: int = 5          # steps between lookahead updates
    lookahead_decay: float = 0.95 ** 5  # the slow weights' decay at the last step (grows as (t / T) ** 3)
    tta: str | None = "flip_translate"  # test-time augmentation (cnnjax.train.tta.TTA_MODES)
    widths: tuple = (64, 256, 256)    # filters of the three conv blocks
    logit_scale: float = 1.0 / 9.0    # fixed factor on the logits
    bn_momentum: float = 0.6          # Keras convention: running = m * running + (1 - m) * batch
    bn_epsilon: float = 1e-12         # added to the batch variance
    identity_init: bool = True        # 3x3 convs start as identity maps (False: PyTorch's uniform init)
    eval_batch: int = 1000            # test images per evaluation call

    def check(self, where: str = "SpeedrunSettings") -> "SpeedrunSettings":
        """Returns self, or raises ValueError naming the first invalid field, its value and what is valid."""
        def bad(name, rule):
            raise ValueError(f"{where}: {name}={getattr(self, name)!r} {rule}.")

        def number(name):
            v = getattr(self, name)
            return not isinstance(v, bool) and isinstance(v, (int, float, np.integer, np.floating))

        def integer(name):
            v = getattr(self, name)
            return not isinstance(v, bool) and isinstance(v, (int, np.integer))

        for name in ("epochs", "batch_size", "whiten_images", "lookahead_every", "eval_batch"):
            if not integer(name) or getattr(self, name) < 1:
                bad(name, "must be an int >= 1")
        for name in ("lr", "bias_lr_scale", "whiten_eps", "bn_epsilon"):
            if not number(name) or not 0 < getattr(self, name) < math.inf:
                bad(name, "must be a finite number > 0")
        if not number("momentum") or not 0 <= self.momentum < 1:
            bad("momentum", "must lie in [0, 1)")
        for name in ("weight_decay", "whiten_bias_epochs"):
            if not number(name) or not 0 <= getattr(self, name) < math.inf:
                bad(name, "must be a finite number >= 0")
        for name in ("start_factor", "end_factor"):
            if not number(name) or not 0 <= getattr(self, name) <= 1:
                bad(name, "must lie in [0, 1]")
        for name in ("label_smoothing", "warmup", "lookahead_decay"):
            if not number(name) or not 0 <= getattr(self, name) < 1:
                bad(name, "must lie in [0, 1)")
        if not integer("translate") or self.translate < 0:
            bad("translate", "must be an int >= 0 (pixels)")
        if self.tta not in TTA_MODES:
            bad("tta", f"is not one of {', '.join(map(repr, TTA_MODES))}")
        for name in ("flip", "identity_init"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                bad(name, "must be True or False")
        if self.whiten_sample not in WHITEN_SAMPLES:
            bad("whiten_sample", f"is not one of {', '.join(map(repr, WHITEN_SAMPLES))}")
        w = self.widths
        if (isinstance(w, (str, bytes)) or not hasattr(w, "__len__") or len(w) != 3
                or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in w)):
            bad("widths", "must be three ints >= 1 (one per block), e.g. (64, 256, 256)")
        return self


# The MNIST recipe's overrides of SpeedrunSettings (chosen on the CPU by final test accuracy: experiments/SPEED.md,
# "MNIST speedrun"; the module docstring says why each).
MNIST = dict(widths=MNIST_WIDTHS, batch_size=512, epochs=1, flip=False, tta=None, translate=2,
             identity_init=False, end_factor=0.0)


def lr_factor(step, total_steps: int, warmup: float = 0.23, start_factor: float = 0.2, end_factor: float = 0.0):
    """The triangular schedule's factor at ``step`` (0-based; float or int array).

    With ``w = warmup * total_steps``: ``start_factor + (1 - start_factor) * step / w`` for ``step < w``, then
    linear from 1 at ``w`` to ``end_factor`` at ``total_steps``, and 0 after ``total_steps``.
    """
    s = jnp.asarray(step, jnp.float32)
    w = warmup * total_steps
    up = start_factor + (1.0 - start_factor) * s / max(w, 1e-9)
    down = 1.0 + (end_factor - 1.0) * (s - w) / max(total_steps - w, 1e-9)
    return jnp.where(s > total_steps, 0.0, jnp.clip(jnp.where(s < w, up, down), 0.0, 1.0))


def param_labels(params):
    """The optimizer group of each parameter of a :class:`SpeedrunNet`: ``"frozen"`` (the whitening kernel),
    ``"whiten_bias"``, ``"norm_bias"`` (BatchNorm biases) or ``"weights"`` (conv kernels and the head)."""
    def label(path, _):
        names = [getattr(k, "key", str(k)) for k in path]
        if names[0] == "whiten":
            return "frozen" if names[-1] == "kernel" else "whiten_bias"
        return "norm_bias" if "_norm" in names[0] else "weights"

    return jax.tree_util.tree_map_with_path(label, params)


def speedrun_optimizer(settings: SpeedrunSettings, steps_per_epoch: int) -> optax.GradientTransformation:
    """The recipe's optax transformation (module docstring): four parameter groups of Nesterov SGD with
    lr-decoupled weight decay on the triangular schedule over ``epochs * steps_per_epoch`` steps (the whitening
    bias's rate 0 after ``whiten_bias_epochs``, the whitening kernel frozen), inside the cubic lookahead."""
    c = settings
    total = c.epochs * steps_per_epoch
    kilostep = 1024.0 * (1.0 + 1.0 / (1.0 - c.momentum))
    lr = c.lr * c.batch_size / kilostep
    decay = c.weight_decay * c.batch_size / kilostep
    whiten_steps = int(round(c.whiten_bias_epochs * steps_per_epoch))

    def group(peak, gate=None):
        def schedule(count):
            value = peak * lr_factor(count, total, c.warmup, c.start_factor, c.end_factor)
            return value if gate is None else jnp.where(count < gate, value, 0.0)

        return optax.chain(optax.add_decayed_weights(decay / peak),
                           optax.sgd(schedule, momentum=c.momentum, nesterov=True))

    inner = optax.multi_transform(
        {"weights": group(lr), "norm_bias": group(lr * c.bias_lr_scale),
         "whiten_bias": group(lr, whiten_steps), "frozen": optax.set_to_zero()},
        param_labels)
    return averaging.lookahead(inner, c.lookahead_every,
                               averaging.cubic_lookahead_alpha(total, c.lookahead_decay))


def whitening_sample(images, count: int, how: str = "spread"):
    """The ``count`` images (all, where there are fewer) that the normalisation statistics and the whitening
    kernel are computed from: ``how="first"`` takes the first ones, ``"spread"`` rows spread evenly over the set
    (:func:`cnnjax.sampling.spread_indices`): on a set sorted by class (the JPEG copy of CIFAR-10: its first 5000
    training images are all of one class) the first ones are one class, the spread sample holds every class in its
    proportion."""
    if how not in WHITEN_SAMPLES:
        raise ValueError(f"whitening_sample: how={how!r} is not one of {', '.join(map(repr, WHITEN_SAMPLES))}.")
    n = images.shape[0]
    if count >= n or how == "first":
        return images[:count]
    return images[spread_indices(n, count)]


def input_statistics(sample_u8):
    """(mean, std) per channel of uint8 images on the ``[0, 1]`` scale, float64 NumPy ``(c,)``."""
    x = np.asarray(sample_u8, np.float64) / 255.0
    return x.mean(axis=(0, 1, 2)), x.std(axis=(0, 1, 2))


@dataclasses.dataclass(frozen=True, eq=False)
class Recipe:
    """A model and all of `fit`'s settings for it (see the module docstring)."""

    name: str
    model: Any                         # a flax.linen Module (float32; fit clones it with ``dtype``)
    optimizer: optax.GradientTransformation
    epochs: int
    batch_size: int
    label_smoothing: float
    augment: str | None                # fit's augment spec
    dtype: str | None                  # fit's compute dtype (None: float32)
    tta: str | None                    # evaluate's test-time augmentation
    input_shape: tuple
    steps_per_epoch: int
    whitening_kernel: Any = None       # set into params["whiten"]["kernel"] by initial_state
    lookahead_every: int = 1
    lookahead_decay: float = 0.0
    eval_batch_size: int = 1000
    settings: dict = dataclasses.field(default_factory=dict)   # the hyperparameters, JSON-able

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def initial_state(self, seed: int = 0) -> TrainState:
        """`fit`'s own initial state for ``seed`` (the same key and initial weights) with the whitening kernel set
        and the optimizer state (the lookahead's slow copy) initialised on those weights."""
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"{self.name}: seed={seed!r} must be an int.")
        state = create_state(self.model, self.optimizer, input_shape=self.input_shape,
                             key=jax.random.PRNGKey(int(seed)))
        if self.whitening_kernel is None:
            return state
        params = with_whitening(state.params, self.whitening_kernel)
        return state.replace(params=params, opt_state=self.optimizer.init(params))

    def fit_kwargs(self, seed: int = 0) -> dict:
        """The keyword arguments of ``fit(self.model, data, **...)`` for ``seed``."""
        return dict(optimizer=self.optimizer, epochs=self.epochs, batch_size=self.batch_size,
                    label_smoothing=self.label_smoothing, dtype=self.dtype, augment=self.augment, seed=int(seed),
                    initial_state=self.initial_state(seed))

    @property
    def eval_kwargs(self) -> dict:
        """The keyword arguments of ``evaluate(self.model, state, data, **...)``: the dtype and the TTA."""
        return dict(dtype=self.dtype, tta=self.tta, batch_size=self.eval_batch_size)

    def finish(self, state: TrainState) -> TrainState:
        """The state after the lookahead's last update: where the run did not end on a multiple of
        ``lookahead_every`` steps, ``params = d * slow + (1 - d) * params`` with ``d = lookahead_decay`` (the
        decay at the last step); otherwise `state` itself (its parameters are the slow weights already)."""
        found = averaging.lookahead_state(state.opt_state)
        if found is None or self.total_steps % self.lookahead_every == 0:
            return state
        d = self.lookahead_decay * (int(np.asarray(state.step)) / self.total_steps) ** 3
        # slow + (1 - d) * (fast - slow): the same value, and exactly the weights where fast == slow (the frozen ones)
        params = jax.tree.map(lambda s, f: (s + (1.0 - d) * (f - s)).astype(f.dtype), found.slow, state.params)
        return state.replace(params=params)


_whitening_kernel = jax.jit(whitening_kernel, static_argnums=1)


def _check_images(where: str, images) -> np.ndarray:
    if not hasattr(images, "dtype") or images.dtype != np.uint8:
        raise ValueError(f"{where}: train_images must be uint8 (0..255) images, got "
                         f"{getattr(images, 'dtype', type(images).__name__)}.")
    if images.ndim != 4 or images.shape[-1] < 1 or min(images.shape[1:3]) < 17 or images.shape[0] < 1:
        raise ValueError(f"{where}: train_images must be NHWC (n, h, w, channels) with n >= 1 and h, w >= 17, got "
                         f"shape {tuple(images.shape)}.")
    return images


def speedrun_recipe(train_images, *, dtype: str | None = None, name: str = "speedrun_recipe",
                    **settings) -> Recipe:
    """The speedrun recipe (module docstring) for :class:`SpeedrunNet` on ``train_images`` (uint8 NHWC, the
    images ``fit`` will train on: they set the normalisation, the whitening kernel and the steps per epoch),
    with any :class:`SpeedrunSettings` field overridden. ``dtype``: None (float32), "float32", "bfloat16" or
    "float16"."""
    fields = {f.name for f in dataclasses.fields(SpeedrunSettings)}
    unknown = sorted(set(settings) - fields)
    if unknown:
        raise TypeError(f"{name}: unknown setting {unknown[0]!r}; the recipe's settings are "
                        f"{', '.join(sorted(fields))}.")
    if "widths" in settings and isinstance(settings["widths"], list):
        settings["widths"] = tuple(settings["widths"])
    s = SpeedrunSettings(**settings).check(name)
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"{name}: dtype={dtype!r} is not one of None, {', '.join(map(repr, DTYPES))}.")
    images = _check_images(name, train_images)
    n = images.shape[0]
    if s.batch_size > n:
        raise ValueError(f"{name}: batch_size={s.batch_size} is larger than the {n} training images; use a "
                         f"batch size <= {n}.")
    sample = np.asarray(whitening_sample(images, s.whiten_images, s.whiten_sample))
    mean, std = input_statistics(sample)
    if not np.all(std > 0):
        raise ValueError(f"{name}: the whitening sample's per-channel std is {std.tolist()}; a constant channel "
                         "cannot be normalised (are the images blank?).")
    normalised = ((sample.astype(np.float32) / 255.0 - mean.astype(np.float32)) / std.astype(np.float32))
    kernel = np.asarray(_whitening_kernel(normalised, float(s.whiten_eps)))
    model = SpeedrunNet(widths=tuple(int(w) for w in s.widths), logit_scale=s.logit_scale,
                        bn_momentum=s.bn_momentum, bn_epsilon=s.bn_epsilon, identity_init=bool(s.identity_init),
                        input_mean=tuple(float(v) for v in mean), input_std=tuple(float(v) for v in std))
    steps_per_epoch = n // s.batch_size
    parts = [p for p, on in (("flip", s.flip), (f"translate:{s.translate}", s.translate > 0)) if on]
    return Recipe(name=name, model=model, optimizer=speedrun_optimizer(s, steps_per_epoch), epochs=s.epochs,
                  batch_size=s.batch_size, label_smoothing=s.label_smoothing, augment=",".join(parts) or None,
                  dtype=None if dtype in (None, "float32") else dtype, tta=s.tta,
                  input_shape=tuple(int(d) for d in images.shape[1:]), steps_per_epoch=steps_per_epoch,
                  whitening_kernel=kernel, lookahead_every=s.lookahead_every, lookahead_decay=s.lookahead_decay,
                  eval_batch_size=s.eval_batch, settings=dict(dataclasses.asdict(s), dtype=dtype or "float32"))


def cifar10_speedrun(train_images, *, dtype: str | None = None, **settings) -> Recipe:
    """The CIFAR-10 speedrun recipe (airbench94's ideas, module docstring) for 32x32x3 uint8 ``train_images``;
    ``settings``: any :class:`SpeedrunSettings` field (e.g. ``epochs=11``)."""
    return speedrun_recipe(train_images, dtype=dtype, name="cifar10_speedrun", **settings)


def mnist_speedrun(train_images, *, dtype: str | None = None, **settings) -> Recipe:
    """The MNIST speedrun recipe: :func:`speedrun_recipe` with :data:`MNIST` and then ``settings`` over it,
    for 28x28x1 uint8 ``train_images`` (the zoo's ``speedrun_mnist`` network)."""
    return speedrun_recipe(train_images, dtype=dtype, name="mnist_speedrun", **{**MNIST, **settings})


def run_recipe(recipe: Recipe, train, test=None, *, seed: int = 0, progress: bool = False,
               **fit_options) -> dict:
    """Trains ``recipe.model`` on ``train = (images, labels)`` with ``fit(**recipe.fit_kwargs(seed),
    **fit_options)`` (e.g. ``loop="step"``, ``keep_freed_memory=True``), applies :meth:`Recipe.finish`, and
    evaluates on ``test`` without and with the recipe's TTA.

    Returns a dict: ``state``, ``history`` (fit's), ``train_seconds`` (wall seconds of ``fit`` and ``finish``,
    compilation included: ``fit`` compiles its step in the first epoch), ``test_acc``, ``test_acc_tta`` (None
    without ``test``; equal to ``test_acc`` where the recipe has no TTA), ``eval_seconds`` (wall seconds of the
    evaluation with the recipe's TTA, or of the plain one where it has none; compilation included), ``tta``, ``seed``, ``epochs``, ``steps``, ``train_loss`` (per epoch)
    and ``settings``.
    """
    t0 = time.perf_counter()
    state, history = fit(recipe.model, train, progress=progress, **recipe.fit_kwargs(seed), **fit_options)
    state = recipe.finish(state)
    jax.block_until_ready(state)
    train_seconds = time.perf_counter() - t0
    out = {"state": state, "history": history, "train_seconds": train_seconds, "test_acc": None,
           "test_acc_tta": None, "eval_seconds": None, "tta": recipe.tta, "seed": int(seed),
           "epochs": recipe.epochs, "steps": recipe.total_steps, "train_loss": list(history.get("loss", [])),
           "settings": dict(recipe.settings)}
    if test is not None:
        t1 = time.perf_counter()
        out["test_acc"] = evaluate(recipe.model, state, test, **dict(recipe.eval_kwargs, tta=None))["accuracy"]
        if recipe.tta is None:
            out["test_acc_tta"] = out["test_acc"]
        else:
            t1 = time.perf_counter()
            out["test_acc_tta"] = evaluate(recipe.model, state, test, **recipe.eval_kwargs)["accuracy"]
        out["eval_seconds"] = time.perf_counter() - t1
    return out
