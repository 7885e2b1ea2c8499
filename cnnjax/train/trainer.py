"""`fit` and `evaluate`: the Keras-like training loop over in-memory arrays.

Data order: epoch e visits the rows ``perm_e = numpy.random.default_rng([seed, e]).permutation(N)``; step t of
the epoch uses rows ``perm_e[t*B:(t+1)*B]`` (the last N mod B rows of each epoch are dropped). The order depends
only on (seed, epoch), so a resumed run and every parallel mode see exactly the same global batches.

Loop form (`loop`): ``"scan"`` runs chunks of steps (`loop_choice.chunk_steps`: up to 100, the same length
each) as one jitted ``lax.scan`` over the stacked batches; ``"unroll"`` runs short chunks
(`loop_choice.unroll_steps`: up to 8) with the steps unrolled in one jitted program; ``"step"`` dispatches one
jitted step per batch. ``"auto"`` (the default) takes the form by a fixed rule of the backend and the model
(`cpu_speed.loop_choice.rule`: the scan on accelerators; on a CPU by how many XLA convolutions the step keeps),
so two runs with the same seed on the same machine give the same bits. ``"measure"`` times the three forms on
copies of the state before training and keeps the fastest; the forms agree to float rounding, not bit for bit,
so two measured runs whose timings pick different forms end in different last bits. The form is printed (with
``progress=True``) and stored with checkpoints, so a resumed run keeps it. Chunks also end at multiples of
`checkpoint_every` (global steps) and at epoch ends, so a resumed run compiles and runs the same chunks as an
uninterrupted one: resumption is bit-for-bit on CPU. Checkpoints also record what the steps were compiled with
(jaxlib version, platform, parallel mode, the XLA options and the CPU forms below); a run that resumes with any
of them changed warns, since other kernels round differently.

On a CPU, `fit` runs each step's convolutions and max/min pools in XLA:CPU's faster forms (`cpu_forms`;
`cpu_speed.swap`) and compiles the steps with XLA:CPU's options (`cpu_speed.compile_options`; convolutions by
XLA's kernels instead of YNNPACK's; ``CNNJAX_XLA_CPU_OPTIONS=0`` turns that off). Neither changes anything
outside the steps. `keep_freed_memory=True` also sets glibc's malloc to keep freed memory in the process
(`cpu_speed.host_memory`: process-wide, so only when asked; ``cnnjax train`` asks).

Non-finite loss: losses are checked at every synchronisation point (every `log_every` steps, each segment end)
and always before a checkpoint is written; a NaN/inf raises `NonFiniteLossError` naming the step and the last
finite loss, and the checkpoint directory keeps the last good state.
"""
from __future__ import annotations

import math
import time
import warnings
from functools import partial
from typing import Any, Callable, Sequence

import flax.errors
import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
import optax

from cnnjax._args import check_int
from cnnjax.functional.images import as_float_images
from cnnjax.nnx.adapter import as_linen, is_nnx, update as nnx_update
from cnnjax.params import check_model

from .cpu_speed import compile_options as _compile_options
from .cpu_speed import loop_choice
from .cpu_speed.host_memory import keep_freed_memory as _keep_freed_memory
from . import averaging as _averaging
from . import progress as _progress
from .checkpoint import CheckpointCorruptError, Checkpointer
from .ensemble import create_ensemble, with_update_scale
from .optim import check_number, make_optimizer
from .parallel import Strategy, make_strategy, warn_note
from .state import TrainState, create_state
from .callbacks import wants_stop
from .steps import TTA_MODES
from .stream import BatchStream, is_stream

LOOPS = ("auto", "measure", "scan", "step", "unroll")


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss."""


def as_arrays(data, *, fn: str = "fit", arg: str = "data", examples: str = "examples"):
    """(images [N,H,W,C], labels int [N]) from a tuple, a dict or an object with .images and .labels; N >= 1, the
    images uint8 or float in [0, 1] (`_check_image_range`)."""
    if isinstance(data, dict):
        if "images" not in data or "labels" not in data:
            raise ValueError(f"{fn}: a {arg} dict needs keys 'images' and 'labels', got {list(data)}.")
        images, labels = data["images"], data["labels"]
    elif hasattr(data, "images") and hasattr(data, "labels"):
        images, labels = data.images, data.labels
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        images, labels = data
    else:
        raise TypeError(f"{fn}: {arg} must be (images, labels), a dict with those keys or a Split; "
                        f"got {type(data).__name__}.")
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 4 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{fn}: {arg} needs images [N, H, W, C] and labels [N]; got shapes "
                         f"{images.shape} and {labels.shape}.")
    if not len(images):
        raise ValueError(f"{fn}: {arg} has 0 {examples}.")
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"{fn}: {arg} labels must be integer class ids, got dtype {labels.dtype}.")
    _check_image_range(fn, arg, images)
    return images, labels.astype(np.int32)


def _check_image_range(fn, arg, images: np.ndarray) -> None:
    """The steps divide uint8 images by 255 and take float images as they are (`cnnjax.functional.as_float_images`), so float
    images must already be in [0, 1]: ValueError where they look like 0..255 (one max over the host array), and
    TypeError for other dtypes (int images would reach the model unscaled)."""
    if images.dtype == np.uint8:
        return
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise TypeError(f"{fn}: {arg} images have dtype {images.dtype}; pass uint8 images (0..255, divided by 255 "
                        "in the step) or float images in [0, 1].")
    top = float(np.max(images))
    if top > 1.0 + 1e-6:       # NaN compares False: non-finite inputs are NonFiniteLossError's to report
        raise ValueError(f"{fn}: {arg} images are {images.dtype} with values up to {top:.6g}, but float images "
                         "must be in [0, 1] (they are used as they are; only uint8 images are divided by 255); "
                         "pass uint8 images or divide these by 255.")


def _check_label_smoothing(fn, value):
    if not 0.0 <= check_number(fn, "label_smoothing", value) < 1.0:
        raise ValueError(f"{fn}: label_smoothing={value!r} must be a number in [0, 1), e.g. 0.1.")


def _compute_dtype(fn, given):
    try:
        dtype = jnp.dtype(given)
    except TypeError:
        dtype = None
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"{fn}: dtype={given!r} is not a floating-point dtype; use 'float32', 'bfloat16' or "
                         "'float16'.")
    return dtype


def _check_labels(fn, arg, labels, classes):
    """ValueError where a label is not one of the model's ``classes`` (one_hot would make it an all-zero target:
    a loss of 0 and an accuracy of 0, silently)."""
    if len(labels) and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"{fn}: {arg} labels must be class indices in [0, {classes}) for a model with {classes} "
                         f"outputs; got labels from {labels.min()} to {labels.max()}.")


def _classes_and_variable_shapes(model, input_shape) -> tuple[int, Any]:
    """(the number of logits `model` gives for one image of `input_shape`, the shapes of its variables):
    traced only, nothing runs."""
    key = jax.random.PRNGKey(0)
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    out, variables = jax.eval_shape(partial(model.init_with_output, train=False), {"params": key, "dropout": key},
                                    x)
    return int(out.shape[-1]), jax.tree.map(lambda v: v.shape, variables)


def _num_classes_with(fn, model, state, images) -> int:
    """The number of logits of `model` with `state`'s variables on `images` (traced only): ValueError where
    they do not fit."""
    variables = {"params": state.params, **({"batch_stats": state.batch_stats} if state.batch_stats else {})}
    x = jax.ShapeDtypeStruct((1, *images.shape[1:]), jnp.float32)
    try:
        out = jax.eval_shape(partial(model.apply, train=False), variables, x)
    except flax.errors.FlaxError as err:
        raise ValueError(f"{fn}: the state's parameters do not fit this model on images of shape "
                         f"{tuple(images.shape[1:])}: a state of another model, an ensemble's state (take one "
                         f"member with cnnjax.train.member(state, i)), or parameters trained on images of another "
                         f"shape? {err}") from None
    return int(out.shape[-1])


def ends_in_softmax(model) -> bool:
    """Whether `model` visibly ends in a softmax: a zoo model built with ``softmax=True``, or a Sequential whose
    last layer is ``Dense(..., activation="softmax")``, ``Activation("softmax")`` or ``jax.nn.softmax``."""
    if hasattr(model, "softmax") and isinstance(getattr(model, "softmax"), (bool, np.bool_)):
        return bool(model.softmax)
    layers = getattr(model, "layers", None)
    if isinstance(layers, (list, tuple)):
        return bool(layers) and ends_in_softmax(layers[-1])
    if model is jax.nn.softmax:
        return True
    if type(model).__name__ in ("Dense", "Activation"):
        act = getattr(model, "activation", None)
        return act is jax.nn.softmax or (isinstance(act, str) and act.lower() == "softmax")
    return False


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The row order of epoch `epoch` (see module docstring)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def _check_state(fn, state) -> None:
    if not isinstance(state, TrainState):
        hint = (" For bare variables, wrap them: TrainState(step=np.int32(0), params=variables['params'], "
                "opt_state=None, batch_stats=variables.get('batch_stats', {}), rng=None)."
                if isinstance(state, dict) else "")
        raise TypeError(f"{fn}: state must be a TrainState (from create_state or fit), got "
                        f"{type(state).__name__}.{hint}")


def evaluate_with(strategy: Strategy, placed_state, images, labels, *, batch_size: int = 1000) -> dict:
    """Mean loss and accuracy over all rows (the last batch padded with weight 0), any strategy."""
    n = len(images)
    b = math.ceil(min(batch_size, n) / strategy.n_devices) * strategy.n_devices
    sums = None
    for start in range(0, n, b):
        x, y = images[start:start + b], labels[start:start + b]
        w = np.ones(len(x), np.float32)
        if len(x) < b:
            pad = b - len(x)
            x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
            y, w = np.concatenate([y, np.zeros(pad, y.dtype)]), np.concatenate([w, np.zeros(pad, np.float32)])
        out = strategy.eval_step(placed_state, *strategy.place_batch(x, y, w))
        sums = out if sums is None else jax.tree.map(lambda a, c: a + c, sums, out)
    sums = jax.tree.map(np.asarray, sums)
    return {"loss": sums["loss_sum"] / sums["count"], "accuracy": sums["correct"] / sums["count"]}


def evaluate(model, state, data, *, batch_size: int = 1000, dtype=None, label_smoothing: float = 0.0,
             parallel: str = "none", tta: str | None = None) -> dict[str, float]:
    """{"loss", "accuracy"} of `model` with `state` (params and batch_stats) on `data`, in inference mode;
    ``tta="flip"`` averages the logits of each image and its mirror image (test-time augmentation),
    ``"flip_translate"`` also over one-pixel translations of both, ``"translate"`` over the translations only
    (:mod:`cnnjax.train.tta`)."""
    if tta not in TTA_MODES:
        raise ValueError(f"evaluate: tta={tta!r}; valid: None or {', '.join(repr(m) for m in TTA_MODES[1:])}.")
    model = as_linen(model) if is_nnx(model) else model
    check_model("evaluate", model)
    _check_state("evaluate", state)
    images, labels = as_arrays(data, fn="evaluate")
    check_int(batch_size, "batch_size", "evaluate")
    _check_label_smoothing("evaluate", label_smoothing)
    if dtype is not None:
        dtype = _compute_dtype("evaluate", dtype)
    _check_labels("evaluate", "data", labels, _num_classes_with("evaluate", model, state, images))
    strategy = make_strategy(parallel, model, optax.identity(), label_smoothing=label_smoothing, dtype=dtype,
                             tta=tta)
    out = evaluate_with(strategy, strategy.place_state(state), images, labels, batch_size=batch_size)
    return {k: float(v) for k, v in out.items()}



def _mean_metric(x) -> float:
    return float(np.mean(x))


def _compiled_with(strategy) -> dict:
    """What decides the kernels of the steps, and so their rounding: stored with checkpoints."""
    return {"jaxlib": jaxlib.__version__, "platform": jax.default_backend(), "parallel": strategy.name,
            "compiler_options": strategy.compiler_options, "cpu_forms": strategy.cpu_forms,
            "data_on_device": strategy.data_on_device}


def _check_compiled_with(saved_meta: dict, current: dict, directory: str) -> None:
    """Warn where a checkpoint's steps were compiled otherwise than this run's (another jaxlib, platform,
    parallel mode or other XLA options); checkpoints that do not record it have nothing to compare."""
    saved = saved_meta.get("compiled_with")
    if not isinstance(saved, dict):
        return
    changed = [key for key in current if key in saved and (saved[key] or None) != (current[key] or None)]
    if not changed:
        return
    what = "; ".join(f"{key} {saved[key]!r} then, {current[key]!r} now" for key in changed)
    if changed == ["compiler_options"] and current["platform"] == "cpu":
        advice = (f"This run's options: {_compile_options.reason()}. CNNJAX_XLA_CPU_OPTIONS=0 turns them off "
                  "(see cnnjax.train.cpu_speed.compile_options).")
    else:
        advice = "Resume with the checkpoint's setup for that."
    warnings.warn(f"fit: the checkpoint in {directory} was written by steps compiled otherwise than this "
                  f"run's ({what}). Other kernels round differently, so the resumed run need not be "
                  f"bit-for-bit the uninterrupted one. {advice}", stacklevel=3)


def fit(model, data, labels=None, *, optimizer: str | optax.GradientTransformation = "adam", epochs: int,
        batch_size: int | None = None, learning_rate: float = 1e-3, schedule: str = "constant", warmup_steps: int = 0,
        momentum: float = 0.9, nesterov: bool = False, weight_decay: float = 0.0,
        label_smoothing: float = 0.0, dtype=None, validation_data=None, seed: int = 0,
        parallel: str = "none", loop: str = "auto", ensemble: int = 1,
        learning_rates: Sequence[float] | None = None, checkpoint_dir: str | None = None,
        checkpoint_every: int | None = None, keep: int = 3, resume: bool = False,
        meta: dict | None = None, notes: dict | None = None, progress: bool = True, log_every: int = 20,
        on_epoch_end: Callable[[dict], Any] | None = None, eval_batch_size: int = 1000,
        cpu_forms: bool | None = None, keep_freed_memory: bool = False, augment=None,
        data_on_device: bool | None = None, callbacks: Sequence[Any] = (), validation_split: float | None = None,
        initial_state: TrainState | None = None, ema_decay: float | None = None,
        lookahead: tuple[int, float] | None = None, validate_averaged: bool = False,
        steps_per_epoch: int | None = None):
    """Train `model` (a flax.linen Module returning logits) on `data`; return (state, history).

    An NNX model (`cnnjax.nnx` or any ``flax.nnx.Module``) trains through its linen view from its current
    weights (`cnnjax.nnx.as_linen`), and the trained weights are written back into it (not for ensembles).

    data / validation_data: (images [N,H,W,C] uint8 or float in [0,1], labels int [N]), a dict with keys "images"
    and "labels", or a Split; float images above 1 (0..255 left unscaled) are a ValueError.
    data may also be a stream of batches (`stream.py`): an iterable of (images, labels) batches such as
    ``tfds.as_numpy(dataset)``, a generator, or a function ``epoch -> batches`` such as `cnnjax.data.pipeline`'s;
    read ahead in a thread while the device computes. batch_size is then the batches' size (optional), and
    steps_per_epoch the batches of one epoch (default: ``len(data)``; needed for generators). A stream is not
    shuffled by fit and cannot be kept on the device.
    optimizer: a name from `optim.OPTIMIZERS` (built with `learning_rate`, `schedule`, `warmup_steps`,
    `momentum`, `nesterov`, `weight_decay`; schedules span ``epochs * (N // batch_size)`` steps) or any
    ``optax.GradientTransformation``.
    dtype: compute dtype (e.g. "bfloat16"): the model is cloned with ``dtype=`` and inputs cast; params, loss and
    gradients stay float32 (float16 also gets a static loss scale, `steps.loss_scale_for`).
    parallel: "none", "pmap" or "shard" (see `parallel.py`); batch_size is the global batch.
    ensemble / learning_rates: train N members at once with `vmap` (seeds differ; or member i uses
    learning_rates[i]); the returned state has a leading member axis.
    checkpoint_dir: save every `checkpoint_every` steps and at each epoch end, keep the last `keep` (checksummed,
    never a non-finite state, one writer per folder: `checkpoint.py`); resume=True continues from the latest
    checkpoint that verifies (params, optimizer, step, rng, data position), and refuses a folder without one, a
    run already at `epochs`, and settings that differ from the checkpoint's (optimizer, learning rate, schedule
    and its length, momentum, weight decay, label smoothing, dtype, seed, batch size, ...); without it, a
    checkpoint_dir that already holds checkpoints is a ValueError (before any training).
    meta: extra JSON-able facts stored with checkpoints and required to match on resume (e.g. model name);
    notes: JSON-able facts stored with checkpoints and not checked (e.g. the command line).
    history: dict of per-epoch lists: "epoch", "loss" and "accuracy" (means over the epoch's training steps),
    "images_per_s" (training images / wall seconds of the epoch's steps; the first epoch includes compilation),
    "seconds" and, with validation_data, "val_loss", "val_accuracy"; ensembles add "<key>_members" lists.
    loop: "auto" (a fixed rule), "measure", "scan", "step" or "unroll" (see the module docstring).
    cpu_forms: run the steps' convolutions and pools in XLA:CPU's faster forms (None: on a CPU backend, for
    parallel "none" and "pmap").
    keep_freed_memory: set glibc's malloc to keep freed memory in the process (faster steps on a CPU; changes
    the whole process, see `cpu_speed.host_memory`).
    augment: data augmentation inside the compiled step, on each batch before scaling: a spec such as
    "flip,translate:2" (`cnnjax.functional.augment.from_spec`) or any ``(key, images) -> images`` function;
    each step draws fresh augmentations from the run's seed (so a resumed run repeats them).
    labels: with images as `data`, Keras' ``fit(model, x, y, ...)``.
    validation_split: hold out this fraction of the training rows, the last ones as given (as Keras does), as
    validation_data.
    callbacks: objects with ``on_epoch_end(record)``, e.g. `callbacks.EarlyStopping`; a return value of True or
    "stop" (also from `on_epoch_end`) stops training after that epoch and returns the state so far (checkpointed
    first, with a checkpoint_dir). ``EarlyStopping(restore_best_weights=True)`` returns its best epoch's state.
    initial_state: a TrainState (e.g. from an earlier fit) to continue from: its parameters, optimizer state, BatchNorm
    statistics and rng, for `epochs` more epochs (the step counter starts again at 0).
    ema_decay / lookahead: weight averaging around the optimizer (`averaging.py`): the exponential moving
    average of the parameters (read it with ``averaging.averaged_params(state.opt_state)``), and Lookahead
    ``(every, alpha)``; validate_averaged=True scores validation_data with the moving average.
    data_on_device: keep the training set on the device (uint8 stays uint8) and gather each batch inside the
    compiled program, so only row indices travel per call; None: on an accelerator, for parallel "none" or
    "shard" in one process, when the arrays fit `device_data_budget()`. The rows are those of the host path
    (`epoch_order`), so both see the same batches for a seed.
    """
    nnx_model = model if is_nnx(model) else None      # an NNX model trains through its linen view
    model = as_linen(model) if nnx_model is not None else model
    check_model("fit", model)
    augment_fn, augment_name = _augmentation("fit", augment)
    if ends_in_softmax(model):
        warnings.warn(f"fit: {type(model).__name__} ends in a softmax, but fit's loss takes logits (it applies the "
                      "softmax itself), so it would train on probabilities as if they were logits, which trains "
                      "slower and worse; drop the last softmax (e.g. Dense(10), or a zoo model without softmax=True) "
                      "and apply jax.nn.softmax to the outputs when you need probabilities.", stacklevel=2)
    epochs = check_int(epochs, "epochs", "fit")
    stream = None
    if labels is not None:
        data = (data, labels)
    elif is_stream(data):
        if steps_per_epoch is not None:
            steps_per_epoch = check_int(steps_per_epoch, "steps_per_epoch", "fit")
        for name, value, bad in (("validation_split", validation_split, validation_split is not None),
                                 ("data_on_device", data_on_device, bool(data_on_device)),
                                 ("loop", loop, loop == "measure")):
            if bad:
                raise ValueError(f"fit: {name}={value!r} needs in-memory (images, labels) arrays; data is a stream "
                                 f"of batches ({type(data).__name__}).")
        stream = BatchStream(data, fn="fit", steps_per_epoch=steps_per_epoch, epochs=epochs)
        if batch_size is None:
            batch_size = stream.batch_size
        elif batch_size != stream.batch_size:
            raise ValueError(f"fit: batch_size={batch_size!r}, but the stream's first batch has {stream.batch_size} "
                             "images; leave batch_size out (it is the batches' size) or batch the stream so.")
        data = stream.first
    elif steps_per_epoch is not None:
        raise ValueError("fit: steps_per_epoch applies to a stream of batches; with in-memory arrays an epoch is "
                         "len(images) // batch_size steps.")
    images, labels = as_arrays(data, examples="training examples")
    callbacks = _check_callbacks("fit", callbacks)
    if validation_split is not None:
        if validation_data is not None:
            raise ValueError("fit: give validation_data or validation_split, not both.")
        split = check_number("fit", "validation_split", validation_split)
        cut = int(math.ceil(len(images) * (1.0 - split))) if 0.0 < split < 1.0 else -1
        if not 0 < cut < len(images):
            raise ValueError(f"fit: validation_split={validation_split!r} must be a fraction in (0, 1) that leaves "
                             f"rows on both sides of the {len(images)} examples.")
        validation_data = (images[cut:], labels[cut:])
        images, labels = images[:cut], labels[:cut]
    if batch_size is None:
        raise ValueError("fit: batch_size is needed with in-memory arrays (e.g. batch_size=128).")
    batch_size = check_int(batch_size, "batch_size", "fit")
    n = len(images) if stream is None else stream.steps_per_epoch * batch_size
    ensemble = check_int(ensemble, "ensemble", "fit")
    log_every = check_int(log_every, "log_every", "fit")
    eval_batch_size = check_int(eval_batch_size, "eval_batch_size", "fit")
    keep = check_int(keep, "keep", "fit")
    seed = check_int(seed, "seed", "fit", minimum=0)
    if seed >= 2 ** 32:
        raise ValueError(f"fit: seed={seed} must be < 2**32: jax.random.PRNGKey keeps its low 32 bits, so it would "
                         f"give the weights of seed {seed % 2 ** 32}.")
    check_number("fit", "learning_rate", learning_rate)
    if checkpoint_every is not None:
        checkpoint_every = check_int(checkpoint_every, "checkpoint_every", "fit")
        if checkpoint_dir is None:
            raise ValueError("fit: checkpoint_every needs a checkpoint_dir (without one nothing would be saved).")
    if not isinstance(resume, (bool, np.bool_)):
        raise TypeError(f"fit: resume must be True or False, got {resume!r}.")
    if isinstance(optimizer, str) and nesterov and optimizer != "sgd":
        raise ValueError(f"fit: nesterov=True applies to optimizer='sgd' only; optimizer={optimizer!r} would ignore "
                         "it.")
    if stream is None and batch_size > n:
        raise ValueError(f"fit: batch_size {batch_size} is larger than the {n} training examples; "
                         f"use batch_size <= {n}.")
    if loop not in LOOPS:
        raise ValueError(f"fit: unknown loop {loop!r}; valid: {', '.join(LOOPS)}.")
    if resume and checkpoint_dir is None:
        raise ValueError("fit: resume=True needs a checkpoint_dir.")
    if learning_rates is not None:
        if not isinstance(learning_rates, (list, tuple, np.ndarray)):
            raise TypeError(f"fit: learning_rates must be a list of numbers, got {type(learning_rates).__name__}.")
        learning_rates = [check_number("fit", "learning_rates", lr) for lr in learning_rates]
        if not learning_rates or any(not (lr > 0 and math.isfinite(lr)) for lr in learning_rates):
            raise ValueError(f"fit: learning_rates must be positive numbers, got {learning_rates!r}.")
        if ensemble not in (1, len(learning_rates)):
            raise ValueError(f"fit: ensemble={ensemble} but {len(learning_rates)} learning_rates given.")
        ensemble = len(learning_rates)
    _check_label_smoothing("fit", label_smoothing)
    if validation_data is not None:
        val_images, val_labels = as_arrays(validation_data, fn="fit", arg="validation_data")
    if dtype is not None:
        dtype = _compute_dtype("fit", dtype)
        if not hasattr(model, "dtype"):
            raise TypeError(f"fit: dtype={dtype!r} needs a model with a `dtype` field; "
                            f"{type(model).__name__} has none (the zoo's models and the layers with "
                            "parameters have one; for a Sequential, give its layers dtype=).")
        model = model.clone(dtype=dtype)
    classes, variable_shapes = _classes_and_variable_shapes(model, tuple(int(d) for d in images.shape[1:]))
    _check_labels("fit", "data", labels, classes)
    if validation_data is not None:
        if val_images.shape[1:] != images.shape[1:]:      # fine where the variables do not depend on the size
            val_classes, val_shapes = _classes_and_variable_shapes(model, tuple(int(d) for d in val_images.shape[1:]))
            if val_shapes != variable_shapes or val_classes != classes:
                raise ValueError(f"fit: validation_data images have shape {val_images.shape[1:]}, the training "
                                 f"images {images.shape[1:]}, and this model's parameters depend on it; give "
                                 f"both the same (height, width, channels).")
        _check_labels("fit", "validation_data", val_labels, classes)

    steps_per_epoch = n // batch_size
    input_shape = tuple(int(d) for d in images.shape[1:])
    total_steps = epochs * steps_per_epoch
    if isinstance(optimizer, str):
        tx = make_optimizer(optimizer, learning_rate, momentum=momentum, nesterov=nesterov,
                            weight_decay=weight_decay, schedule=schedule, total_steps=total_steps,
                            warmup_steps=warmup_steps)
    elif isinstance(optimizer, optax.GradientTransformation):
        tx = optimizer
    else:
        raise TypeError(f"fit: optimizer must be a name or an optax.GradientTransformation, got {optimizer!r}.")
    if learning_rates is not None:
        tx = with_update_scale(tx)
    if lookahead is not None:
        if not (isinstance(lookahead, (tuple, list)) and len(lookahead) == 2):
            raise TypeError(f"fit: lookahead must be a pair (every, alpha), e.g. (5, 0.5), got {lookahead!r}.")
        tx = _averaging.lookahead(tx, *lookahead)
    if ema_decay is not None:
        tx = _averaging.ema(tx, check_number("fit", "ema_decay", ema_decay))
    if not isinstance(validate_averaged, (bool, np.bool_)):
        raise TypeError(f"fit: validate_averaged must be True or False, got {validate_averaged!r}.")
    if validate_averaged and ema_decay is None:
        raise ValueError("fit: validate_averaged=True needs ema_decay (the moving average to validate).")

    for name, flag in (("keep_freed_memory", keep_freed_memory), ("cpu_forms", cpu_forms)):
        if not (isinstance(flag, (bool, np.bool_)) or (name == "cpu_forms" and flag is None)):
            raise TypeError(f"fit: {name} must be True or False{' or None' if name == 'cpu_forms' else ''}, "
                            f"got {flag!r}.")
    if keep_freed_memory and jax.default_backend() == "cpu":
        _keep_freed_memory()     # XLA:CPU re-faults each step's temporaries in otherwise (host_memory.py)
    is_ensemble = ensemble > 1 or learning_rates is not None
    strategy = make_strategy(parallel, model, tx, label_smoothing=label_smoothing, dtype=dtype,
                             ensemble=is_ensemble, cpu_forms=cpu_forms, augment=augment_fn)
    warn_note(strategy)
    on_device = stream is None and _data_on_device("fit", data_on_device, strategy, images, labels)
    strategy.data_on_device = on_device
    if batch_size % strategy.n_devices:
        raise ValueError(f"fit: batch_size {batch_size} is not divisible by the {strategy.n_devices} devices of "
                         f"parallel={parallel!r}; use a multiple of {strategy.n_devices}.")
    ckpt = Checkpointer(checkpoint_dir, max_to_keep=keep, writer=True) if checkpoint_dir is not None else None
    feed = None
    try:
        if ckpt is not None and not resume and ckpt.latest_step() is not None:
            last = ckpt.latest_step()     # orbax would refuse the first save (StepAlreadyExistsError), an epoch late
            ckpt.close()
            raise ValueError(f"fit: checkpoint_dir {checkpoint_dir!r} already holds checkpoints (last step {last}); "
                             "pass resume=True to continue, or choose an empty folder.")

        init_key = jax.random.PRNGKey(seed)
        if is_ensemble:
            scales = None if learning_rates is None else [lr / learning_rate for lr in learning_rates]
            state = create_ensemble(model, tx, input_shape=input_shape,
                                    keys=list(jax.random.split(init_key, ensemble)), lr_scales=scales)
        else:
            state = create_state(model, tx, input_shape=input_shape, key=init_key)
        if initial_state is not None:
            state = _initial("fit", initial_state, state, resume, is_ensemble)
        placed = strategy.place_state(state)
        del state

        run_meta = {"seed": seed, "batch_size": batch_size, "n_train": n if stream is None else None,
                    **({"steps_per_epoch": steps_per_epoch} if stream is not None else {}), "ensemble": ensemble,
                    **_settings(optimizer, learning_rate, schedule, warmup_steps, momentum, nesterov, weight_decay,
                                label_smoothing, dtype, learning_rates, total_steps),
                    "augment": augment_name, "ema_decay": None if ema_decay is None else float(ema_decay),
                    "lookahead": None if lookahead is None else [int(lookahead[0]), _alpha_name(lookahead[1])],
                    **(meta or {})}
        history: dict[str, list] = {}
        partial, saved_meta, best = None, {}, None
        if ckpt is not None and resume:
            if ckpt.latest_step() is None:
                raise ValueError(f"fit: resume=True but {ckpt.directory} holds no checkpoint; check the folder, "
                                 "or pass resume=False to start from scratch.")
            try:                # settings first: another optimizer would fail in the restore with orbax's tree dump
                _check_same_settings(ckpt.read_meta(), run_meta, ckpt)
            except CheckpointCorruptError:
                pass            # the restore below falls back to an older step that verifies
            restored, saved_meta = ckpt.restore(strategy.canonical(placed), fallback=True)
            _check_same_settings(saved_meta, run_meta, ckpt)
            placed = strategy.place_state(restored)
            history = saved_meta.get("history", {})
            partial = saved_meta.get("partial")
            _check_compiled_with(saved_meta, _compiled_with(strategy), ckpt.directory)
        step = int(np.asarray(strategy.canonical(placed).step).reshape(-1)[0])
        if resume:
            done_epochs, into = divmod(step, steps_per_epoch)
            if step > total_steps:
                raise ValueError(f"fit: the checkpoint in {ckpt.directory} is at step {step} ({done_epochs} epochs "
                                 f"of {steps_per_epoch} steps), past the {total_steps} steps of epochs={epochs}; pass "
                                 f"epochs >= {-(-step // steps_per_epoch)} to go on (evaluate() or `cnnjax evaluate` "
                                 "reads its accuracy).")
            if step == total_steps:
                warnings.warn(f"fit: nothing left to train: the checkpoint in {ckpt.directory} is at step {step}, "
                              f"the end of epochs={epochs}; returning its state (pass more epochs to go on).",
                              stacklevel=2)
            elif progress and jax.process_index() == 0:
                where = f"epoch {done_epochs + 1}, step {into} of {steps_per_epoch}" if into else \
                    f"the start of epoch {done_epochs + 1}"
                print(f"fit: resuming from the checkpoint of step {step} in {ckpt.directory} ({where}).", flush=True)
        if loop in ("auto", "measure") and saved_meta.get("loop") in loop_choice.FORMS:
            loop = saved_meta["loop"]           # a resumed run keeps its form
        elif loop == "auto":
            loop = _rule_loop(model, strategy, input_shape, batch_size, dtype, progress)
        elif loop == "measure":
            loop = _measured_loop(strategy, placed, images, labels, batch_size=batch_size, seed=seed,
                                  steps_per_epoch=steps_per_epoch, progress=progress)
        chunk = (loop_choice.unroll_steps if loop == "unroll" else loop_choice.chunk_steps)(steps_per_epoch)
        train_chunk = strategy.train_unrolled if loop == "unroll" else strategy.train_chunk
        if on_device:      # the dataset on the device once; each call gets only its rows
            data_x, data_y = strategy.place_data(images, labels)
            data_chunk = strategy.data_unrolled if loop == "unroll" else strategy.data_chunk

        def save(step_now, partial_now):
            ckpt.save(step_now, strategy.canonical(placed),
                      {**run_meta, "notes": notes or {}, "history": history, "partial": partial_now, "loop": loop,
                       "compiled_with": _compiled_with(strategy)})

        last_loss = {"step": step, "loss": history["loss"][-1] if history.get("loss") else float("nan")}

        def check_finite(losses: np.ndarray, first_step: int):
            flat = losses.reshape(losses.shape[0], -1)
            bad = ~np.isfinite(flat).all(axis=1)
            if bad.any():
                i = int(np.argmax(bad))
                saved = ckpt.latest_step() if ckpt is not None else None
                kept = (f"the last good checkpoint is step {saved} in {ckpt.directory}" if saved is not None
                        else "no checkpoint was written")
                if i > 0:       # flat[i - 1] is finite: i is the first non-finite row
                    before = f"last finite loss {float(np.mean(flat[i - 1])):.6g} at step {first_step + i}"
                elif np.all(np.isfinite(last_loss["loss"])):
                    before = f"last finite loss {last_loss['loss']:.6g} at step {last_loss['step']}"
                else:
                    before = "no finite loss before it"
                raise NonFiniteLossError(
                    f"fit: the loss became {flat[i].tolist() if flat.shape[1] > 1 else float(flat[i, 0])} at step "
                    f"{first_step + i + 1} (epoch {(first_step + i) // steps_per_epoch + 1}); {before}. Training "
                    f"stopped; {kept}. Try a lower learning rate, gradient clipping or float32 compute.")
            if len(flat):
                last_loss.update(step=first_step + len(flat), loss=float(np.mean(flat[-1])))

        def check_batch(pair, index):
            x, y = as_arrays(pair, arg=f"batch {index} of data")
            if x.shape[1:] != input_shape:
                raise ValueError(f"fit: batch {index} of data has images of shape {x.shape[1:]}, the first batch "
                                 f"{input_shape}; every batch needs the same (height, width, channels).")
            if len(x) % strategy.n_devices:
                raise ValueError(f"fit: batch {index} of data has {len(x)} images, not divisible by the "
                                 f"{strategy.n_devices} devices of parallel={parallel!r}.")
            _check_labels("fit", f"batch {index} of data", y, classes)
            return x, y

        for epoch in range(step // steps_per_epoch, epochs):
            pos = step - epoch * steps_per_epoch
            if stream is None:
                order = epoch_order(seed, epoch, n)
            else:
                feed = stream.epoch(epoch, pos, check_batch)
            if partial is not None and partial.get("epoch") == epoch:
                loss_sum, acc_sum, counted = (np.asarray(partial["loss_sum"]), np.asarray(partial["acc_sum"]),
                                              partial["steps"])
            else:
                loss_sum, acc_sum, counted = 0.0, 0.0, 0
            partial = None
            bar = _progress.epoch_bar(epoch=epoch, epochs=epochs, total=steps_per_epoch, initial=pos,
                                      enabled=progress)
            t0, run_steps = time.perf_counter(), 0
            while pos < steps_per_epoch:
                end = steps_per_epoch
                if checkpoint_every is not None:
                    end = min(end, (step // checkpoint_every + 1) * checkpoint_every - epoch * steps_per_epoch)
                pending = []   # (first_step, metrics)
                if loop in ("scan", "unroll"):
                    start = pos
                    while start < end:
                        stop = min(end, (start // chunk + 1) * chunk)
                        rows = None if stream is not None else order[start * batch_size:stop * batch_size]
                        if stream is not None:
                            placed, m = _stream_chunk(strategy, train_chunk, placed, feed.take(stop - start),
                                                      batch_size)
                        elif on_device:
                            placed, m = data_chunk(placed, data_x, data_y, strategy.place_rows(
                                rows.reshape(stop - start, batch_size), stacked=True))
                        else:
                            x = images[rows].reshape(stop - start, batch_size, *images.shape[1:])
                            y = labels[rows].reshape(stop - start, batch_size)
                            placed, m = train_chunk(placed, *strategy.place_batch(x, y, stacked=True))
                        pending.append((step + start - pos, m))
                        if stop < end:
                            loss_sum, acc_sum, counted = _flush(pending, check_finite, loss_sum, acc_sum, counted,
                                                                bar, t0, batch_size, run_steps + stop - pos)
                            pending = []
                        start = stop
                else:
                    for t in range(pos, end):
                        if stream is not None:
                            (x, y), = feed.take(1)
                            placed, m = strategy.train_step(placed, *strategy.place_batch(x, y))
                        elif on_device:
                            rows = order[t * batch_size:(t + 1) * batch_size]
                            placed, m = strategy.data_step(placed, data_x, data_y, strategy.place_rows(rows))
                        else:
                            rows = order[t * batch_size:(t + 1) * batch_size]
                            placed, m = strategy.train_step(placed,
                                                            *strategy.place_batch(images[rows], labels[rows]))
                        pending.append((step + t - pos, jax.tree.map(lambda a: a[None], m)))
                        if len(pending) >= log_every and t + 1 < end:
                            loss_sum, acc_sum, counted = _flush(pending, check_finite, loss_sum, acc_sum, counted,
                                                                bar, t0, batch_size, run_steps + t + 1 - pos)
                            pending = []
                run_steps += end - pos
                step += end - pos
                pos = end
                loss_sum, acc_sum, counted = _flush(pending, check_finite, loss_sum, acc_sum, counted, bar, t0,
                                                    batch_size, run_steps)
                if ckpt is not None and pos < steps_per_epoch:
                    save(step, {"epoch": epoch, "loss_sum": np.asarray(loss_sum).tolist(),
                                "acc_sum": np.asarray(acc_sum).tolist(), "steps": counted})
            if stream is not None:
                feed.close()
                feed = None
            seconds = time.perf_counter() - t0
            record = {"epoch": epoch + 1, "loss": loss_sum / max(counted, 1), "accuracy": acc_sum / max(counted, 1),
                      "images_per_s": run_steps * batch_size / seconds if run_steps else float("nan"),
                      "seconds": seconds}
            if validation_data is not None:
                scored = placed.replace(params=_averaging.averaged_params(placed.opt_state)) \
                    if validate_averaged else placed
                val = evaluate_with(strategy, scored, val_images, val_labels, batch_size=eval_batch_size)
                record.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
            for key, value in record.items():
                value = np.asarray(value)
                if value.ndim:
                    history.setdefault(key + "_members", []).append(value.tolist())
                history.setdefault(key, []).append(float(np.mean(value)) if key != "epoch" else int(value))
            extra = {"val_acc": history["val_accuracy"][-1]} if validation_data is not None else {}
            bar.set_postfix(_progress.postfix(history["loss"][-1], history["accuracy"][-1],
                                              history["images_per_s"][-1], **extra), refresh=True)
            bar.close()
            if ckpt is not None:
                save(step, None)
            last = {k: v[-1] for k, v in history.items()}
            stop = on_epoch_end is not None and wants_stop(on_epoch_end(last))
            for callback in callbacks:
                stop = wants_stop(callback.on_epoch_end(last)) or stop
                if getattr(callback, "restore_best_weights", False) and callback.best_epoch == epoch + 1:
                    best = _copy_state(placed)      # the next step donates these buffers
            if stop:
                break
        if any(getattr(c, "restore_best_weights", False) and c.best_epoch is not None for c in callbacks) and \
                best is not None:
            placed = best
        final = strategy.canonical(placed)
        if nnx_model is not None and not is_ensemble:
            nnx_update(nnx_model, final)                # the trained weights, written back into the NNX model
        return final, history
    finally:
        if feed is not None:
            feed.close()
        if ckpt is not None:
            ckpt.close()


def _rule_loop(model, strategy, input_shape, batch_size, dtype, progress) -> str:
    """`loop="auto"`: `loop_choice.rule` of the backend and of the XLA convolutions the step keeps."""
    platform = jax.local_devices()[0].platform
    convolutions = 0
    if platform == "cpu":
        x = jax.ShapeDtypeStruct((max(batch_size // strategy.n_devices, 1), *input_shape), dtype or jnp.float32)
        key = jax.random.PRNGKey(0)
        variables = jax.eval_shape(partial(model.init, train=False), {"params": key, "dropout": key}, x)
        convolutions = loop_choice.xla_convolutions(partial(model.apply, train=False), variables, x,
                                                    cpu_forms=strategy.cpu_forms)
    choice = loop_choice.rule(platform, convolutions)
    if progress:
        print(f"fit: loop='auto' takes {choice!r} ({platform}, {convolutions} XLA convolution"
              f"{'s' if convolutions != 1 else ''} in the step; loop='measure' times the forms instead).",
              flush=True)
    return choice


def _measured_loop(strategy, placed, images, labels, *, batch_size, seed, steps_per_epoch, progress) -> str:
    """`loop="measure"`: the fastest form, measured on batches of epoch 0."""
    if steps_per_epoch <= loop_choice.PROBE_STEPS:
        return "step"
    order = epoch_order(seed, 0, len(images))

    def batch(i):
        rows = order[i * batch_size:(i + 1) * batch_size]
        return images[rows], labels[rows]

    unroll = loop_choice.unroll_probe(steps_per_epoch)
    measured = loop_choice.measure_loops(strategy, placed, batch, batch_size=batch_size, unroll=unroll,
                                         scan=loop_choice.chunk_steps(steps_per_epoch))
    choice = loop_choice.agreed_choice(loop_choice.choose(measured))
    if progress:
        extra = f", {measured['unroll']:,.0f} in unrolled chunks of {unroll}" if "unroll" in measured else ""
        print(f"fit: loop='measure' measured {measured['scan']:,.0f} images/s in a {measured['scan_steps']}-step "
              f"scan{extra} and "
              f"{measured['step']:,.0f} per step ({measured['seconds']:.1f} s, compilation included); "
              f"using {choice!r}.", flush=True)
    return choice


DEVICE_DATA_BYTES = 2 << 30     # at most this much training data is kept on a device ...
DEVICE_DATA_FRACTION = 0.25     # ... and at most this fraction of the device's memory, where it reports one


def device_data_budget(device=None) -> int:
    """Bytes of training data `fit` keeps on `device` (default: the first local one): ``DEVICE_DATA_BYTES``, or
    ``DEVICE_DATA_FRACTION`` of the memory the device reports if that is less (the rest is the model's)."""
    device = device or jax.local_devices()[0]
    try:
        limit = (device.memory_stats() or {}).get("bytes_limit")
    except Exception:      # noqa: BLE001 - backends without memory statistics (the CPU) raise or return None
        limit = None
    return int(min(DEVICE_DATA_BYTES, DEVICE_DATA_FRACTION * limit)) if limit else DEVICE_DATA_BYTES


def _data_on_device(fn: str, asked, strategy, images, labels) -> bool:
    """Whether `fit` keeps the training arrays on the device (see its `data_on_device` argument)."""
    if asked is not None and not isinstance(asked, (bool, np.bool_)):
        raise TypeError(f"{fn}: data_on_device must be True, False or None, got {asked!r}.")
    size, budget = images.nbytes + labels.nbytes, device_data_budget()
    able = strategy.data_step is not None and jax.process_count() == 1
    if asked is None:
        return bool(able and size <= budget and jax.local_devices()[0].platform != "cpu")
    if asked and not able:
        raise ValueError(f"{fn}: data_on_device=True needs parallel='none' or 'shard' in one process; this run has "
                         f"parallel={strategy.name!r} in {jax.process_count()} process(es).")
    if asked and size > budget:
        raise ValueError(f"{fn}: data_on_device=True, but the training arrays take {size / 2**20:,.0f} MiB, over the "
                         f"{budget / 2**20:,.0f} MiB budget (device_data_budget()); pass data_on_device=False.")
    return bool(asked)


def _check_callbacks(fn: str, callbacks) -> list:
    if callbacks is None:
        return []
    if not isinstance(callbacks, (list, tuple)):
        callbacks = [callbacks]
    for c in callbacks:
        if not callable(getattr(c, "on_epoch_end", None)):
            raise TypeError(f"{fn}: callbacks must have an on_epoch_end(record) method (e.g. "
                            f"cnnjax.train.EarlyStopping), got {type(c).__name__}.")
    return list(callbacks)


def _copy_state(placed):
    return jax.tree.map(lambda a: a.copy() if isinstance(a, jax.Array) else a, placed)


def _initial(fn: str, initial, fresh: TrainState, resume: bool, is_ensemble: bool) -> TrainState:
    """`initial` as the run's first state (its step counter at 0), where it fits the model and optimizer."""
    _check_state(fn, initial)
    if resume:
        raise ValueError(f"{fn}: give initial_state or resume=True, not both.")
    if is_ensemble:
        raise ValueError(f"{fn}: initial_state is not supported for ensembles; train the members separately.")
    shapes_of = lambda t: jax.tree.map(lambda a: (tuple(np.shape(a)), str(np.asarray(a).dtype)), t)  # noqa: E731
    for part in ("params", "opt_state", "batch_stats"):
        if jax.tree.structure(getattr(initial, part)) != jax.tree.structure(getattr(fresh, part)) or \
                shapes_of(getattr(initial, part)) != shapes_of(getattr(fresh, part)):
            raise ValueError(f"{fn}: initial_state's {part} does not fit this model and optimizer (another model, "
                             "optimizer or input shape?).")
    state = initial.replace(step=np.zeros_like(np.asarray(fresh.step)),
                            rng=fresh.rng if initial.rng is None else initial.rng)
    return _copy_state(state)       # the steps donate their input buffers: the caller's arrays stay intact


def predict(model, state, images, *, batch_size: int = 1000, probabilities: bool = True, dtype=None):
    """Class probabilities (softmax of the logits) or, with ``probabilities=False``, the float32 logits of `model`
    with `state`'s variables on `images` (uint8, or float in [0, 1]), in inference mode, as a NumPy ``[N, C]``."""
    model = as_linen(model) if is_nnx(model) else model
    check_model("predict", model)
    _check_state("predict", state)
    images = np.asarray(images)
    if images.ndim != 4 or not len(images):
        raise ValueError(f"predict: images must be a non-empty batch [N, H, W, C], got shape {images.shape}.")
    _check_image_range("predict", "images", images)
    batch_size = check_int(batch_size, "batch_size", "predict")
    if not isinstance(probabilities, (bool, np.bool_)):
        raise TypeError(f"predict: probabilities must be True or False, got {probabilities!r}.")
    variables = {"params": state.params, **({"batch_stats": state.batch_stats} if state.batch_stats else {})}
    apply = jax.jit(lambda v, x: model.apply(v, as_float_images(x, dtype), train=False).astype(jnp.float32))
    b = min(batch_size, len(images))
    out = []
    for start in range(0, len(images), b):
        x = images[start:start + b]
        pad = b - len(x)            # the last batch padded to the same shape: one compilation
        if pad:
            x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
        out.append(np.asarray(apply(variables, x))[:b - pad])
    logits = np.concatenate(out)
    return np.asarray(jax.nn.softmax(logits, axis=-1)) if probabilities else logits


def _augmentation(fn: str, augment):
    """(the function, the name stored with checkpoints) of fit's `augment` argument; (None, None) for None."""
    if augment is None:
        return None, None
    if isinstance(augment, str):
        from cnnjax.functional.augment import from_spec
        return from_spec(augment), augment
    if callable(augment):
        return augment, f"custom:{getattr(augment, '__name__', type(augment).__name__)}"
    raise TypeError(f"{fn}: augment must be a spec such as 'flip,translate:2' or a function (key, images) -> "
                    f"images, got {type(augment).__name__} {augment!r}.")


def _alpha_name(alpha):
    """Lookahead's alpha as stored with checkpoints: the number, or ``"schedule:<name>"`` for a function of the
    step (a resumed run must give one of the same name)."""
    if callable(alpha):
        return f"schedule:{getattr(alpha, '__qualname__', type(alpha).__name__)}"
    return float(alpha)


def _settings(optimizer, learning_rate, schedule, warmup_steps, momentum, nesterov, weight_decay,
               label_smoothing, dtype, learning_rates, total_steps) -> dict:
    """The settings that change a run's results, stored with its checkpoints and required to match on resume.
    A custom optax optimizer is recorded as "custom" (its settings cannot be compared); `schedule_steps` (the
    length the schedule spans, from `epochs`) only for a named optimizer with a schedule other than constant."""
    named = isinstance(optimizer, str)
    out = {"optimizer": optimizer if named else "custom", "label_smoothing": float(label_smoothing),
           "dtype": "float32" if dtype is None else str(jnp.dtype(dtype)),
           "learning_rates": None if learning_rates is None else [float(lr) for lr in learning_rates]}
    if named:
        out.update(learning_rate=float(learning_rate), schedule=schedule, warmup_steps=int(warmup_steps),
                   weight_decay=float(weight_decay),
                   schedule_steps=int(total_steps) if schedule != "constant" else None)
        if optimizer == "sgd":
            out.update(momentum=float(momentum), nesterov=bool(nesterov))
    return out


def _check_same_settings(saved_meta: dict, run_meta: dict, ckpt) -> None:
    """ValueError naming every setting this run gives otherwise than the checkpoint's run (those the checkpoint
    records: older checkpoints record fewer)."""
    differ = [key for key, value in run_meta.items() if key in saved_meta and saved_meta[key] != value]
    if not differ:
        return
    what = "; ".join(f"{key}={saved_meta[key]!r} there, {run_meta[key]!r} here" for key in differ)
    hint = (" (schedule_steps is epochs x steps per epoch: a schedule other than constant spans the run's length, "
            "so a resumed run must keep its epochs)" if "schedule_steps" in differ else "")
    raise ValueError(f"fit: cannot resume from {ckpt.directory}: it was written with other settings ({what}){hint}. "
                     "Use the same settings, or another checkpoint directory.")


def _stream_chunk(strategy, train_chunk, placed, batches, batch_size):
    """Train on a chunk of streamed batches: stacked into one call of `train_chunk` where all have
    `batch_size` images, else one `train_step` call per batch (the metrics stacked as the chunk's)."""
    if all(len(x) == batch_size for x, _ in batches):
        x, y = np.stack([b[0] for b in batches]), np.stack([b[1] for b in batches])
        return train_chunk(placed, *strategy.place_batch(x, y, stacked=True))
    metrics = []
    for x, y in batches:
        placed, m = strategy.train_step(placed, *strategy.place_batch(x, y))
        metrics.append(m)
    return placed, jax.tree.map(lambda *ms: jnp.stack(ms), *metrics)


def _flush(pending, check_finite, loss_sum, acc_sum, counted, bar, t0, batch_size, run_steps):
    """Bring pending step metrics to the host, check them, add them to the epoch sums, update the bar."""
    if not pending:
        return loss_sum, acc_sum, counted
    for first, m in pending:
        losses, accs = np.asarray(m["loss"]), np.asarray(m["accuracy"])
        check_finite(losses, first)
        loss_sum = loss_sum + losses.sum(0)
        acc_sum = acc_sum + accs.sum(0)
        counted += losses.shape[0]
        bar.update(losses.shape[0])
    rate = run_steps * batch_size / max(time.perf_counter() - t0, 1e-9)
    bar.set_postfix(_progress.postfix(_mean_metric(loss_sum / counted), _mean_metric(acc_sum / counted), rate),
                    refresh=False)
    return loss_sum, acc_sum, counted
