"""Inference artifacts: a model and its variables as one serialized ``jax.export`` program with a symbolic batch.

    >>> cnnjax.export(model, variables, "mnist.jaxexport", input_shape=(28, 28, 1), platforms=("cpu", "cuda"))
    >>> predict = cnnjax.load_export("mnist.jaxexport")
    >>> logits = predict(images)                 # images [N, 28, 28, 1], any N >= 0

:func:`export` traces ``model.apply(variables, x, train=False)`` (no dropout, BatchNorm's running statistics)
for an input of shape ``(b, H, W, C)``, where ``b`` is a ``jax.export`` symbolic size (any batch size >= 1), and
lowers it with ``jax.export.export`` for each platform asked for (``"cpu"``, ``"cuda"``, ``"rocm"``, ``"tpu"``;
by default the CPU and the platform of this process).
The variables are constants inside the program: the artifact needs neither cnnjax, Flax nor the checkpoint.

Two files are written, each atomically (a temporary file in the same folder, then ``os.replace``):

* ``path``: exactly the bytes of ``Exported.serialize()``; ``jax.export.deserialize(open(path, "rb").read())``
  loads it without cnnjax, and its ``.call(images)`` runs it.
* ``path + ".json"``: what the artifact is: the platforms it was lowered for, input shape and dtype, the output
  (logits or probabilities, number of classes), the compute dtype, the cnnjax / jax / flax versions that wrote it,
  its size in bytes and its BLAKE2b checksum (32-byte digest, hex). The bytes stay a plain ``jax.export``
  artifact; the sidecar is what lets :func:`load_export` refuse a damaged or truncated one by name.

Input convention (the training steps'): an artifact with ``input_dtype="float32"`` (the default) takes float32
images in [0, 1]; one with ``input_dtype="uint8"`` takes uint8 images 0..255 and divides them by 255 inside the
program. The program casts them to the compute ``dtype`` (default float32) and returns float32 logits, or with
``probabilities=True`` their softmax, ``[N, classes]``.

:func:`export_saved_model` writes the same function as a TensorFlow SavedModel through ``jax2tf`` (a ``None``
batch in its signature), when TensorFlow is installed (``pip install "cnnjax[tf]"``).
"""
from __future__ import annotations

import hashlib
import json
import numbers
import os
import shutil
import tempfile
from collections.abc import Mapping
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import export as jax_export

from cnnjax.functional.images import as_float_images
from cnnjax.params import check_model
from cnnjax.version import __version__

__all__ = ["export", "load_export", "export_saved_model", "ExportedModel", "ExportCorruptError", "PLATFORMS",
           "INPUT_DTYPES", "FORMAT"]

PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
INPUT_DTYPES = ("float32", "uint8")
COMPUTE_DTYPES = ("float32", "bfloat16", "float16")
FORMAT = "cnnjax.export/1"
_DIGEST_SIZE = 32


class ExportCorruptError(ValueError):
    """An artifact whose bytes do not match its sidecar (truncated, damaged, replaced) or do not deserialize."""


# ------------------------------------------------------------------------------------------------ arguments

def _check_input(fn: str, input_shape, input_dtype):
    """((H, W, C), input dtype name) from `input_shape` ((H, W, C) or a sample image / batch) and `input_dtype`
    (None: a uint8 sample's dtype, float32 otherwise)."""
    if input_shape is None:
        raise TypeError(f"{fn}: input_shape is needed: the image shape (H, W, C), e.g. (28, 28, 1) or "
                        "cnnjax.models.input_shape('mnist_cnn'), or a sample image or batch.")
    sample_dtype = None
    if hasattr(input_shape, "shape") and hasattr(input_shape, "dtype"):          # a sample image or batch
        if len(input_shape.shape) not in (3, 4):
            raise ValueError(f"{fn}: a sample input must be one image [H, W, C] or a batch [N, H, W, C], got shape "
                             f"{tuple(input_shape.shape)}.")
        sample_dtype = np.dtype(input_shape.dtype)
        shape = tuple(int(d) for d in input_shape.shape[-3:])
    elif (isinstance(input_shape, (tuple, list)) and len(input_shape) == 3
          and all(isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in input_shape)):
        shape = tuple(int(d) for d in input_shape)
    else:
        raise ValueError(f"{fn}: input_shape={input_shape!r} must be the image shape (H, W, C): three ints, e.g. "
                         "(28, 28, 1), or a sample image or batch (an array).")
    if any(d < 1 for d in shape):
        raise ValueError(f"{fn}: input_shape={shape} must have every size >= 1.")
    if input_dtype is None:
        input_dtype = "uint8" if sample_dtype == np.uint8 else "float32"
    name = str(np.dtype(input_dtype)) if isinstance(input_dtype, (type, np.dtype)) else input_dtype
    if name not in INPUT_DTYPES:
        raise ValueError(f"{fn}: input_dtype={input_dtype!r}; valid: 'float32' (images in [0, 1]) or 'uint8' "
                         "(images 0..255, divided by 255 inside the program).")
    return shape, name


def _check_platforms(fn: str, platforms) -> tuple:
    """A tuple of distinct platform names from a name, a comma-separated string or a sequence of names; None:
    ``("cpu",)`` plus the platform this process runs on (e.g. ``("cpu", "cuda")`` on an NVIDIA GPU)."""
    if platforms is None:
        return tuple(dict.fromkeys(("cpu", jax_export.default_export_platform())))
    if isinstance(platforms, str):
        platforms = [p.strip() for p in platforms.split(",")]
    if not isinstance(platforms, (tuple, list)) or not platforms or not all(isinstance(p, str) for p in platforms):
        raise TypeError(f"{fn}: platforms must be a non-empty sequence of names from {', '.join(PLATFORMS)}, got "
                        f"{platforms!r}.")
    out = []
    for p in platforms:
        name = p.lower()
        if name not in PLATFORMS:
            hint = " ('gpu' is 'cuda' for NVIDIA or 'rocm' for AMD)" if name == "gpu" else ""
            raise ValueError(f"{fn}: unknown platform {p!r}{hint}; valid: {', '.join(PLATFORMS)}.")
        if name not in out:
            out.append(name)
    return tuple(out)


def _check_variables(fn: str, variables) -> dict:
    """`variables` as a dict of collections: model.init's result, or a training state's params and batch_stats."""
    if not isinstance(variables, Mapping) and hasattr(variables, "params"):       # a TrainState from fit
        stats = getattr(variables, "batch_stats", None)
        variables = {"params": variables.params, **({"batch_stats": stats} if stats else {})}
    if not isinstance(variables, Mapping) or "params" not in variables:
        got = (f"a dict with keys {sorted(map(str, variables))}" if isinstance(variables, Mapping)
               else type(variables).__name__)
        raise TypeError(f"{fn}: variables must be a dict of collections with 'params' (model.init's result, or "
                        f"{{'params': state.params, 'batch_stats': state.batch_stats}}), or a training state; "
                        f"got {got}.")
    return dict(variables)


def _check_dtype(fn: str, model, dtype):
    """The model to trace: `model` itself, or a copy computing in `dtype` (models with a ``dtype`` field)."""
    if dtype is None:
        return model, "float32"
    name = str(jnp.dtype(dtype)) if not isinstance(dtype, str) else dtype
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"{fn}: dtype={dtype!r}; valid compute dtypes: {', '.join(COMPUTE_DTYPES)} (or None).")
    if name == "float32":
        return model, name
    if "dtype" not in {f.name for f in getattr(model, "__dataclass_fields__", {}).values()}:
        raise TypeError(f"{fn}: dtype={name!r} needs a model with a dtype field (the zoo models have one); "
                        f"{type(model).__name__} has none.")
    return model.clone(dtype=jnp.dtype(name)), name


def _check_flag(fn: str, name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{fn}: {name} must be True or False, got {value!r}.")
    return bool(value)


def _inference(fn: str, model, variables, input_shape, *, dtype, input_dtype, probabilities):
    """(``apply(variables, images) -> float32 outputs``, checked variables, (H, W, C), input dtype name, compute
    dtype name, output ``jax.ShapeDtypeStruct`` for a batch of 1)."""
    check_model(fn, model)
    variables = _check_variables(fn, variables)
    shape, input_dtype = _check_input(fn, input_shape, input_dtype)
    model, compute = _check_dtype(fn, model, dtype)
    probabilities = _check_flag(fn, "probabilities", probabilities)
    cast = None if compute == "float32" else jnp.dtype(compute)

    def apply(variables, images):
        out = model.apply(variables, as_float_images(images, cast), train=False).astype(jnp.float32)
        return jax.nn.softmax(out, axis=-1) if probabilities else out

    out = jax.eval_shape(apply, variables, jax.ShapeDtypeStruct((1, *shape), input_dtype))
    if probabilities and len(out.shape) != 2:
        raise ValueError(f"{fn}: probabilities=True needs outputs [N, classes]; the model gives shape "
                         f"{tuple(out.shape)} for one image.")
    return apply, variables, shape, input_dtype, compute, out


def _check_out_file(fn: str, path) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{fn}: path must be a file name (str or os.PathLike), got {type(path).__name__}.")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{fn}: path={path!r}: its folder {folder!r} does not exist; create it first.")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{fn}: path={path!r} is a folder; give a file name, e.g. "
                                f"{os.path.join(path, 'model.jaxexport')!r}.")
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"{fn}: path={path!r}: its folder {folder!r} is not writable.")
    return path


def _write_atomically(path: str, data: bytes) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    with tempfile.NamedTemporaryFile("wb", dir=folder, prefix="." + os.path.basename(path) + ".",
                                     delete=False) as f:
        try:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        except BaseException:
            os.unlink(f.name)
            raise
    os.replace(f.name, path)


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=_DIGEST_SIZE).hexdigest()


def _versions() -> dict:
    import flax

    return {"cnnjax": __version__, "jax": jax.__version__, "flax": flax.__version__}


def _dims(shape) -> list:
    return [d if isinstance(d, int) else str(d) for d in shape]


# ------------------------------------------------------------------------------------------------ export / load

def export(model, variables, path, *, input_shape=None, platforms: Sequence[str] | str | None = None, dtype=None,
           input_dtype=None, probabilities: bool = False) -> dict:
    """Writes `model` with `variables` as a ``jax.export`` artifact at `path` and its sidecar ``path + ".json"``;
    returns the sidecar's dict.

    `variables`: ``model.init``'s result, ``{"params": ..., "batch_stats": ...}``, or a training state (its params
    and batch_stats). `input_shape`: the image shape ``(H, W, C)``, or a sample image or batch (its last three
    sizes; a uint8 sample makes ``input_dtype`` default to uint8). The batch axis is symbolic: the artifact runs
    on any batch size. `platforms`: the platforms to lower for, from ``PLATFORMS``: exactly those given, e.g.
    ``("cpu", "cuda")`` for one file that runs on both; default ``("cpu",)`` plus the platform this process runs on
    (so the artifact runs on a CPU and here). `dtype`: compute dtype (None / float32,
    bfloat16, float16; models with a ``dtype`` field). `input_dtype`: ``"float32"`` (images in [0, 1]) or
    ``"uint8"`` (0..255, divided by 255 in the program). `probabilities`: softmax the logits in the program.
    """
    fn = "export"
    platforms = _check_platforms(fn, platforms)
    path = _check_out_file(fn, path)
    apply, variables, shape, input_dtype, compute, out = _inference(
        fn, model, variables, input_shape, dtype=dtype, input_dtype=input_dtype, probabilities=probabilities)

    batch, = jax_export.symbolic_shape("b")
    spec = jax.ShapeDtypeStruct((batch, *shape), input_dtype)
    exported = jax_export.export(jax.jit(lambda images: apply(variables, images)), platforms=platforms)(spec)
    blob = bytes(exported.serialize())
    out_shape = exported.out_avals[0].shape
    meta = {
        "format": FORMAT,
        "artifact": os.path.basename(path),
        "bytes": len(blob),
        "blake2b": _digest(blob),
        "platforms": list(exported.platforms),
        "input": {"shape": _dims(exported.in_avals[0].shape), "dtype": input_dtype,
                  "range": "0..255 (divided by 255 inside)" if input_dtype == "uint8" else "[0, 1]"},
        "output": {"shape": _dims(out_shape), "dtype": "float32",
                   "kind": "probabilities" if probabilities else "logits"},
        "classes": int(out.shape[-1]) if len(out.shape) == 2 else None,
        "compute_dtype": compute,
        "model": type(model).__name__,
        "calling_convention_version": exported.calling_convention_version,
        "versions": _versions(),
    }
    _write_atomically(path, blob)
    _write_atomically(path + ".json", (json.dumps(meta, indent=1) + "\n").encode())
    return meta


class ExportedModel:
    """A loaded artifact: ``model(images) -> outputs`` (a jax array ``[N, ...]``, float32).

    `images`: a batch ``[N, H, W, C]`` of the artifact's image shape. A float32 artifact takes floating images in
    [0, 1] (cast to float32) and uint8 images (divided by 255 first, as the training steps do); a uint8 artifact
    takes uint8 images only. Attributes: ``platforms`` (those it was lowered for), ``input_shape`` (H, W, C),
    ``input_dtype``, ``classes``, ``outputs`` ("logits" or "probabilities"), ``metadata`` (the sidecar's dict)
    and ``exported`` (the ``jax.export.Exported``). It can be called inside ``jax.jit`` (where the values of traced
    float images are not checked against [0, 1])."""

    def __init__(self, exported, metadata: dict, path: str):
        self.exported = exported
        self.metadata = metadata
        self.path = path
        self.platforms = tuple(exported.platforms)
        self.input_shape = tuple(int(d) for d in exported.in_avals[0].shape[1:])
        self.input_dtype = str(exported.in_avals[0].dtype)
        self.classes = metadata.get("classes")
        self.outputs = metadata.get("output", {}).get("kind", "logits")

    def __repr__(self):
        shape = ", ".join(map(str, self.input_shape))
        return (f"ExportedModel({self.path!r}, platforms={self.platforms}, input=(N, {shape}) {self.input_dtype}, "
                f"outputs={self.outputs}, classes={self.classes})")

    def __call__(self, images):
        fn = f"ExportedModel({os.path.basename(self.path)!r})"
        here = jax_export.default_export_platform()
        if here not in self.platforms:
            raise ValueError(f"{fn}: this artifact was lowered for {', '.join(self.platforms)}, and this process "
                             f"runs on {here!r}; export it again with platforms including {here!r}.")
        if not isinstance(images, jax.Array):
            images = np.asarray(images)
        if images.ndim != 4 or tuple(images.shape[1:]) != self.input_shape:
            raise ValueError(f"{fn}: images must be a batch [N, {', '.join(map(str, self.input_shape))}], got shape "
                             f"{tuple(images.shape)}.")
        dtype = np.dtype(images.dtype)
        if self.input_dtype == "uint8":
            if dtype != np.uint8:
                raise TypeError(f"{fn}: this artifact takes uint8 images (0..255), got dtype {dtype}; export it "
                                "with input_dtype='float32' for float images in [0, 1].")
        elif dtype == np.uint8:
            images = images.astype(np.float32) / np.float32(255.0)
        elif np.issubdtype(dtype, np.floating):
            try:
                top = float((np if isinstance(images, np.ndarray) else jnp).max(images)) if images.size else 0.0
            except jax.errors.ConcretizationTypeError:      # traced (inside jit): values unknown, not checked
                top = 0.0
            if top > 1.0 + 1e-6:
                raise ValueError(f"{fn}: images are {dtype} with values up to {top:.6g}, but this artifact takes "
                                 "float images in [0, 1]; pass uint8 images or divide these by 255.")
            images = images.astype(np.float32)
        else:
            raise TypeError(f"{fn}: images have dtype {dtype}; pass float images in [0, 1] or uint8 images.")
        if images.shape[0] == 0:        # jax.export's symbolic sizes are >= 1
            out = self.exported.out_avals[0]
            return jnp.zeros((0, *out.shape[1:]), out.dtype)
        return self.exported.call(images)


def load_export(path) -> ExportedModel:
    """The artifact at `path`, checked against its sidecar ``path + ".json"`` (size and BLAKE2b checksum:
    `ExportCorruptError` naming the file where they differ), deserialized with ``jax.export.deserialize``."""
    fn = "load_export"
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{fn}: path must be a file name (str or os.PathLike), got {type(path).__name__}.")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{fn}: no artifact file at {path!r}.")
    side = path + ".json"
    if not os.path.isfile(side):
        raise FileNotFoundError(f"{fn}: {path!r} has no sidecar {side!r} (written by cnnjax.export beside it), so "
                                "it cannot be verified; jax.export.deserialize(open(path, 'rb').read()) loads it "
                                "unchecked.")
    try:
        with open(side) as f:
            meta = json.load(f)
    except ValueError as e:
        raise ExportCorruptError(f"{fn}: the sidecar {side!r} is not valid JSON ({e}).") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("blake2b"), str):
        raise ExportCorruptError(f"{fn}: the sidecar {side!r} is not a {FORMAT} sidecar (its 'format' is "
                                 f"{meta.get('format') if isinstance(meta, dict) else None!r}).")
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) != meta.get("bytes"):
        what = "truncated" if isinstance(meta.get("bytes"), int) and len(blob) < meta["bytes"] else "damaged"
        raise ExportCorruptError(f"{fn}: {path!r} is {what}: it has {len(blob):,} bytes, its sidecar {side!r} says "
                                 f"{meta.get('bytes')!r}. Export it again.")
    if _digest(blob) != meta["blake2b"]:
        raise ExportCorruptError(f"{fn}: {path!r} does not match the BLAKE2b checksum in {side!r} (the file was "
                                 "damaged or replaced). Export it again.")
    try:
        exported = jax_export.deserialize(bytearray(blob))
    except Exception as e:      # noqa: BLE001 - flatbuffers and MLIR raise many kinds
        raise ExportCorruptError(f"{fn}: {path!r} does not deserialize ({type(e).__name__}: {str(e)[:200]}); it "
                                 f"was written with jax {meta.get('versions', {}).get('jax')}, this is jax "
                                 f"{jax.__version__}.") from None
    return ExportedModel(exported, meta, path)


# ------------------------------------------------------------------------------------------------ SavedModel

def export_saved_model(model, variables, directory, *, input_shape=None,
                       platforms: Sequence[str] | str | None = None, dtype=None, input_dtype=None,
                       probabilities: bool = False) -> str:
    """Writes the same inference function as :func:`export` as a TensorFlow SavedModel in `directory` (a new or
    empty folder; written beside it, then renamed into place), through ``jax.experimental.jax2tf`` with a
    polymorphic batch: its ``serving_default`` signature takes ``images`` ``[None, H, W, C]`` and returns
    ``{"outputs": [None, ...]}``. The variables are ``tf.Variable`` s of the SavedModel. Needs TensorFlow
    (``pip install "cnnjax[tf]"``); returns the folder."""
    fn = "export_saved_model"
    try:
        import tensorflow as tf
        from jax.experimental import jax2tf
    except ImportError as e:
        raise ImportError(f"{fn} needs TensorFlow: pip install \"cnnjax[tf]\" (importing it failed: {e}).") \
            from None
    platforms = _check_platforms(fn, platforms)
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"{fn}: directory must be a folder name (str or os.PathLike), got "
                        f"{type(directory).__name__}.")
    directory = os.path.abspath(os.fspath(directory))
    parent = os.path.dirname(directory)
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"{fn}: directory={directory!r}: its parent folder {parent!r} does not exist.")
    if os.path.exists(directory) and (not os.path.isdir(directory) or os.listdir(directory)):
        raise FileExistsError(f"{fn}: directory={directory!r} exists and is not an empty folder; choose a new one.")
    apply, variables, shape, input_dtype, _, _ = _inference(
        fn, model, variables, input_shape, dtype=dtype, input_dtype=input_dtype, probabilities=probabilities)

    tf_vars = jax.tree.map(lambda a: tf.Variable(np.asarray(a), trainable=False), variables)
    converted = jax2tf.convert(apply, polymorphic_shapes=[None, f"(b, {', '.join(map(str, shape))})"],
                               native_serialization_platforms=platforms, with_gradient=False)
    module = tf.Module()
    module.variables_tree = tf_vars
    tf_dtype = tf.uint8 if input_dtype == "uint8" else tf.float32

    @tf.function(autograph=False, input_signature=[tf.TensorSpec([None, *shape], tf_dtype, name="images")])
    def serve(images):
        return {"outputs": converted(tf_vars, images)}

    module.serve = serve
    work = tempfile.mkdtemp(dir=parent, prefix="." + os.path.basename(directory) + ".")
    try:
        tf.saved_model.save(module, work, signatures={"serving_default": serve})
        if os.path.isdir(directory):
            os.rmdir(directory)            # empty (checked above)
        os.replace(work, directory)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return directory
