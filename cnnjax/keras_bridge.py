"""Keras 3 models in and out: :func:`from_keras` reads a Keras ``Sequential`` (or a functional model that is a
linear chain), given as a model object or a saved ``.keras`` file, into a cnnjax
:class:`~cnnjax.layers.Sequential` and its variables, whose outputs equal Keras' on the same input;
:func:`to_keras` writes cnnjax variables back into the Keras model.

Keras is imported only inside these functions: cnnjax itself never needs it. Every Keras layer becomes the cnnjax
layer of the same name with the same settings (filters, kernel size, strides, padding, dilation, groups,
activation, use_bias, data_format, pooling window, rates, ...). Weights, Keras -> cnnjax:

====================================  ==========================================  ===============================
Keras layer                           Keras weights                               cnnjax variables
====================================  ==========================================  ===============================
Conv1D/2D/3D                          kernel ``(*k, C // groups, K)``, bias        the same (``params``)
Dense                                 kernel ``(in, units)``, bias                 the same
DepthwiseConv2D                       kernel ``(kh, kw, C, M)``                    kernel ``(kh, kw, 1, C * M)``
                                                                                  (a reshape: output channel
                                                                                  ``c * M + m`` in both)
Conv1D/2D/3DTranspose                 kernel ``(*k, K, C)``                        kernel ``(*k, C, K)`` (last two
                                                                                  axes swapped)
BatchNormalization                    gamma, beta, moving_mean, moving_variance    ``params`` scale, bias;
                                                                                  ``batch_stats`` mean, var
====================================  ==========================================  ===============================

Parameter-free layers map directly: MaxPooling, AveragePooling, GlobalAveragePooling, GlobalMaxPooling (1-3 D),
Flatten, Dropout, Activation; ReLU, LeakyReLU, ELU and Softmax become an ``Activation``; InputLayer is dropped.
``Conv1D(padding="causal")`` becomes the explicit padding ``((dilation * (k - 1), 0),)``.

Flatten order: Keras' ``Flatten(data_format="channels_first")`` moves the channels last before flattening (it
flattens ``(H, W, C)``), while a ``Flatten`` whose data_format is channels_last flattens the array as it is, so
after a channels_first conv it flattens ``(C, H, W)``. cnnjax's Flatten flattens the array as it is; for the
first kind a function moving axis 1 last is put before it, so a Dense after it takes Keras' kernel unchanged.

Activations are matched by definition, not by name: Keras' ``gelu`` is the exact (erf) form and its
``leaky_relu`` has slope 0.2, so they become ``jax.nn.gelu(approximate=False)`` and
``jax.nn.leaky_relu(negative_slope=0.2)``. A Keras layer, option, activation or dtype policy that cnnjax has no
exact equivalent of raises an error naming the layer, the option and its value. Initializers, regularizers and
constraints are training settings of Keras and are not carried over.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable, Dict, List, Mapping, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from cnnjax import layers as L

__all__ = ["from_keras", "to_keras"]

# Keras activation names whose cnnjax activation of the same name is the same function.
_SAME_ACTIVATIONS = ("linear", "relu", "relu6", "elu", "sigmoid", "tanh", "softmax", "log_softmax", "softplus",
                     "silu", "swish")
# Keras activations that cnnjax has under another definition or not by name: the jax function equal to Keras'.
_OTHER_ACTIVATIONS: Dict[str, Callable] = {
    "gelu": functools.partial(jax.nn.gelu, approximate=False),           # Keras: 0.5 x (1 + erf(x / sqrt 2))
    "leaky_relu": functools.partial(jax.nn.leaky_relu, negative_slope=0.2),
    "selu": jax.nn.selu,
    "softsign": jax.nn.soft_sign,
    "hard_sigmoid": jax.nn.hard_sigmoid,                               # relu6(x + 3) / 6
    "hard_silu": jax.nn.hard_silu,
    "hard_swish": jax.nn.hard_silu,
    "exponential": jnp.exp,
}
ACTIVATION_NAMES = tuple(sorted((*_SAME_ACTIVATIONS, *_OTHER_ACTIVATIONS)))

_CONV = {"Conv1D": L.Conv1D, "Conv2D": L.Conv2D, "Conv3D": L.Conv3D}
_CONV_T = {"Conv1DTranspose": L.Conv1DTranspose, "Conv2DTranspose": L.Conv2DTranspose,
           "Conv3DTranspose": L.Conv3DTranspose}
_POOL = {"MaxPooling1D": L.MaxPooling1D, "MaxPooling2D": L.MaxPooling2D, "MaxPooling3D": L.MaxPooling3D,
         "AveragePooling1D": L.AveragePooling1D, "AveragePooling2D": L.AveragePooling2D,
         "AveragePooling3D": L.AveragePooling3D}
_GLOBAL_POOL = {"GlobalAveragePooling1D": L.GlobalAveragePooling1D,
                "GlobalAveragePooling2D": L.GlobalAveragePooling2D,
                "GlobalAveragePooling3D": L.GlobalAveragePooling3D,
                "GlobalMaxPooling1D": L.GlobalMaxPooling1D, "GlobalMaxPooling2D": L.GlobalMaxPooling2D,
                "GlobalMaxPooling3D": L.GlobalMaxPooling3D}
_OTHER_LAYERS = ("InputLayer", "Dense", "DepthwiseConv2D", "BatchNormalization", "Flatten", "Dropout",
                 "Activation", "ReLU", "LeakyReLU", "ELU", "Softmax")
SUPPORTED_LAYERS = tuple(sorted((*_CONV, *_CONV_T, *_POOL, *_GLOBAL_POOL, *_OTHER_LAYERS)))


def _same(a, shape):
    return a


def _swap_last(a, shape=None):
    return np.swapaxes(a, -1, -2)


def _depthwise_in(a):
    kh, kw, c, m = a.shape
    return a.reshape(kh, kw, 1, c * m)


def _depthwise_out(a, shape):
    return a.reshape(shape)


@dataclasses.dataclass(frozen=True)
class _Weight:
    """One Keras weight and the cnnjax variable it becomes: ``variables[collection][layers_i][name]``."""

    keras_name: str
    collection: str
    name: str
    to_cnnjax: Callable = lambda a: a
    to_keras: Callable = _same


@dataclasses.dataclass(frozen=True)
class _Step:
    """One entry of the cnnjax Sequential: its layer, the Keras layer it comes from (None for the transpose put
    before a channels_first Flatten) and the weights it takes."""

    module: Any
    keras_layer: Any = None
    weights: Tuple[_Weight, ...] = ()


_KERNEL_BIAS = (_Weight("kernel", "params", "kernel"), _Weight("bias", "params", "bias"))


def channels_first_to_last(x):
    """``(N, C, *spatial) -> (N, *spatial, C)`` (identity for rank 2): what Keras'
    ``Flatten(data_format="channels_first")`` does before it flattens."""
    return jnp.moveaxis(x, 1, -1) if jnp.ndim(x) > 2 else x


# ------------------------------------------------------------------------------------------------ reading Keras
def _keras():
    try:
        import keras
    except ImportError as err:
        raise ImportError("cnnjax.keras_bridge needs Keras 3 (pip install keras); cnnjax itself does not.") from err
    if not hasattr(keras, "ops"):
        raise ImportError(f"cnnjax.keras_bridge needs Keras 3, found keras {keras.__version__}.")
    return keras


def _where(layer) -> str:
    return f"Keras layer {layer.name!r} ({type(layer).__name__})"


def _unsupported(fn: str, layer, option: str, value, valid: str):
    return ValueError(f"{fn}: {_where(layer)} has {option}={value!r}, which cnnjax has no equivalent of; "
                      f"{valid}.")


def _activation(fn: str, layer, value) -> Any:
    """The cnnjax activation (a name or a jax function) equal to Keras' activation ``value``."""
    if isinstance(value, str):
        if value in _SAME_ACTIVATIONS:
            return value
        if value in _OTHER_ACTIVATIONS:
            return _OTHER_ACTIVATIONS[value]
    raise _unsupported(fn, layer, "activation", value, f"supported: {', '.join(ACTIVATION_NAMES)}")


def _require(fn: str, layer, config: Mapping, option: str, allowed: Tuple, valid: str) -> None:
    """Error unless ``config[option]`` (missing counts as allowed) is one of ``allowed``."""
    if option in config and config[option] not in allowed:
        raise _unsupported(fn, layer, option, config[option], valid)


def _conv_padding(fn: str, layer, config: Mapping):
    padding = config["padding"]
    if padding in ("valid", "same"):
        return padding
    if padding == "causal" and len(config["kernel_size"]) == 1:
        (k,), (d,) = config["kernel_size"], config["dilation_rate"]
        return ((d * (k - 1), 0),)
    raise _unsupported(fn, layer, "padding", padding, "use 'valid' or 'same' ('causal' for Conv1D)")


def _layer_steps(fn: str, layer) -> List[_Step]:
    """The cnnjax entries for one Keras layer (empty for an InputLayer)."""
    kind = type(layer).__name__
    config = layer.get_config()
    policy = getattr(getattr(layer, "dtype_policy", None), "name", "float32")
    if kind != "InputLayer" and policy != "float32":
        raise _unsupported(fn, layer, "dtype policy", policy, "cnnjax reads float32 Keras models; build it with "
                           "dtype='float32' (no mixed precision or quantization)")
    if kind == "InputLayer":
        return []
    if kind in _CONV or kind in _CONV_T:
        conv = dict(kernel_size=tuple(config["kernel_size"]), strides=tuple(config["strides"]),
                    padding=_conv_padding(fn, layer, config), dilation_rate=tuple(config["dilation_rate"]),
                    activation=_activation(fn, layer, config["activation"]), use_bias=bool(config["use_bias"]),
                    data_format=config["data_format"])
        if kind in _CONV:
            module = _CONV[kind](config["filters"], groups=config.get("groups", 1), **conv)
            return [_Step(module, layer, _KERNEL_BIAS)]
        _require(fn, layer, config, "output_padding", (None,), "use output_padding=None")
        kernel = _Weight("kernel", "params", "kernel", _swap_last, _swap_last)
        return [_Step(_CONV_T[kind](config["filters"], **conv), layer, (kernel, _KERNEL_BIAS[1]))]
    if kind == "DepthwiseConv2D":
        module = L.DepthwiseConv2D(
            tuple(config["kernel_size"]), strides=tuple(config["strides"]), padding=_conv_padding(fn, layer, config),
            depth_multiplier=config["depth_multiplier"], activation=_activation(fn, layer, config["activation"]),
            use_bias=bool(config["use_bias"]), dilation_rate=tuple(config["dilation_rate"]),
            data_format=config["data_format"])
        kernel = _Weight("kernel", "params", "kernel", _depthwise_in, _depthwise_out)
        return [_Step(module, layer, (kernel, _KERNEL_BIAS[1]))]
    if kind == "Dense":
        _require(fn, layer, config, "lora_rank", (None, 0), "use lora_rank=None (merge the LoRA weights first)")
        _require(fn, layer, config, "quantization_config", (None,), "use an unquantized Dense")
        module = L.Dense(config["units"], activation=_activation(fn, layer, config["activation"]),
                         use_bias=bool(config["use_bias"]))
        return [_Step(module, layer, _KERNEL_BIAS)]
    if kind in _POOL:
        return [_Step(_POOL[kind](tuple(config["pool_size"]), strides=tuple(config["strides"]),
                                  padding=config["padding"], data_format=config["data_format"]), layer)]
    if kind in _GLOBAL_POOL:
        return [_Step(_GLOBAL_POOL[kind](data_format=config["data_format"],
                                         keepdims=bool(config.get("keepdims", False))), layer)]
    if kind == "Flatten":
        flatten = _Step(L.Flatten(), layer)
        if config.get("data_format") == "channels_first":
            return [_Step(channels_first_to_last), flatten]
        return [flatten]
    if kind == "Dropout":
        _require(fn, layer, config, "noise_shape", (None,), "use noise_shape=None (a mask per element)")
        return [_Step(L.Dropout(float(config["rate"])), layer)]
    if kind == "BatchNormalization":
        axis = config["axis"]
        if isinstance(axis, (list, tuple)):
            if len(axis) != 1:
                raise _unsupported(fn, layer, "axis", axis, "normalise along one (channel) axis")
            axis = axis[0]
        _require(fn, layer, config, "renorm", (False,), "use renorm=False")
        module = L.BatchNormalization(axis=int(axis), momentum=float(config["momentum"]),
                                      epsilon=float(config["epsilon"]), center=bool(config["center"]),
                                      scale=bool(config["scale"]))
        weights = ((_Weight("gamma", "params", "scale"),) if config["scale"] else ()) + \
                  ((_Weight("beta", "params", "bias"),) if config["center"] else ()) + \
                  (_Weight("moving_mean", "batch_stats", "mean"), _Weight("moving_variance", "batch_stats", "var"))
        return [_Step(module, layer, weights)]
    if kind == "Activation":
        return [_Step(L.Activation(_activation(fn, layer, config["activation"])), layer)]
    if kind == "ReLU":
        slope, threshold, top = config["negative_slope"], config["threshold"], config["max_value"]
        if threshold != 0:
            raise _unsupported(fn, layer, "threshold", threshold, "use threshold=0")
        if top is None and slope == 0:
            return [_Step(L.Activation("relu"), layer)]
        if top == 6 and slope == 0:
            return [_Step(L.Activation("relu6"), layer)]
        if top is None:
            return [_Step(L.Activation(functools.partial(jax.nn.leaky_relu, negative_slope=float(slope))), layer)]
        raise _unsupported(fn, layer, "max_value", top, "use max_value=None, or 6 with negative_slope=0")
    if kind == "LeakyReLU":
        slope = float(config["negative_slope"])
        return [_Step(L.Activation(functools.partial(jax.nn.leaky_relu, negative_slope=slope)), layer)]
    if kind == "ELU":
        alpha = float(config.get("alpha", 1.0))
        return [_Step(L.Activation("elu" if alpha == 1.0 else functools.partial(jax.nn.elu, alpha=alpha)), layer)]
    if kind == "Softmax":
        _require(fn, layer, config, "axis", (-1,), "use axis=-1")
        return [_Step(L.Activation("softmax"), layer)]
    raise NotImplementedError(
        f"{fn}: {_where(layer)} has no cnnjax equivalent; the layers cnnjax reads are "
        f"{', '.join(SUPPORTED_LAYERS)} (and models nested in a Sequential).")


def _chain(fn: str, keras, model) -> List[Any]:
    """The layers of ``model`` in order; NotImplementedError naming the first layer off a linear chain."""
    if isinstance(model, keras.Sequential):
        out = []
        for layer in model.layers:
            out += _chain(fn, keras, layer) if isinstance(layer, keras.Model) else [layer]
        return out
    try:
        inputs, outputs = list(model.inputs), list(model.outputs)
    except (AttributeError, TypeError, ValueError):
        inputs = outputs = None
    if not inputs or not outputs:
        raise NotImplementedError(
            f"{fn}: the Keras model {model.name!r} ({type(model).__name__}) is a subclassed model (its layers are "
            "wired by Python code); cnnjax reads Sequential models and functional models that are a linear chain.")
    if len(inputs) != 1 or len(outputs) != 1:
        raise NotImplementedError(f"{fn}: the Keras model {model.name!r} has {len(inputs)} inputs and "
                                  f"{len(outputs)} outputs; cnnjax reads models with one input and one output.")
    current, out = inputs[0], []
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        if isinstance(layer, keras.Model):
            raise NotImplementedError(f"{fn}: {_where(layer)} is a model inside a functional model; nest models "
                                      "in a Sequential, or rebuild it with the layers themselves.")
        try:
            layer_input = layer.input
        except (AttributeError, ValueError, RuntimeError):
            layer_input = None
        if layer_input is not current:
            raise NotImplementedError(
                f"{fn}: {_where(layer)} does not take the previous layer's output alone (a branching graph: "
                "several inputs, a shared layer or a skip connection); cnnjax's Sequential reads linear chains.")
        current = layer.output
        out.append(layer)
    if current is not outputs[0]:
        raise NotImplementedError(f"{fn}: the Keras model {model.name!r}'s output is not its last layer's output "
                                  "(a branching graph); cnnjax's Sequential reads linear chains.")
    return out


def _plan(fn: str, keras_model) -> List[_Step]:
    keras = _keras()
    if not isinstance(keras_model, keras.Model):
        raise TypeError(f"{fn}: expected a Keras 3 model (keras.Sequential or keras.Model) or the path of a "
                        f"saved .keras file, got {type(keras_model).__name__} {keras_model!r:.80}.")
    if not keras_model.built:
        raise ValueError(f"{fn}: the Keras model {keras_model.name!r} is not built (it has no weights yet); start "
                         "it with keras.Input(shape), or call it on a batch, first.")
    steps = [step for layer in _chain(fn, keras, keras_model) for step in _layer_steps(fn, layer)]
    if not steps:
        raise ValueError(f"{fn}: the Keras model {keras_model.name!r} has no layers besides its input.")
    return steps


def _keras_weights(fn: str, step: _Step) -> Dict[str, Any]:
    """The Keras layer's weights by name, checked to be exactly those the cnnjax layer takes."""
    layer = step.keras_layer
    have = {w.name: w for w in layer.weights}
    need = [w.keras_name for w in step.weights]
    if sorted(have) != sorted(need):
        raise ValueError(f"{fn}: {_where(layer)} has the weights {sorted(have)}, but cnnjax's "
                         f"{type(step.module).__name__} takes {sorted(need)} (LoRA or quantized weights are not "
                         "read).")
    return have


def _load(fn: str, source):
    keras = _keras()
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{fn}: no Keras model file at {path!r}; give a keras.Model or the path of a "
                                    "file written by model.save('name.keras').")
        return keras.saving.load_model(path, compile=False)
    return source


def from_keras(keras_model_or_path) -> Tuple[L.Sequential, Dict[str, Any]]:
    """A cnnjax ``Sequential`` and its variables that compute what the Keras model computes.

    Args:
      keras_model_or_path: a built Keras 3 ``Sequential`` or functional model whose layers form one chain (models
        nested in a Sequential are read in place), or the path of a ``.keras`` file it was saved to.

    Returns:
      ``(model, variables)``: ``model.apply(variables, x)`` equals ``keras_model(x)`` (inference: Dropout off,
      BatchNormalization with its moving statistics; ``train=True`` trains as Keras does). ``variables`` is
      ``{"params": {"layers_i": ...}}``, with ``"batch_stats"`` where the model has BatchNormalization; entry
      ``layers_i`` is the Keras layer at the same position, InputLayers left out (a channels_first
      ``Flatten`` takes two entries).

    Raises:
      NotImplementedError for a Keras layer cnnjax has no equivalent of, or a model that is not a linear chain,
      naming the layer; ValueError for a layer option, activation or dtype policy cnnjax has no equivalent of,
      naming the layer, the option and its value.
    """
    fn = "from_keras"
    keras_model = _load(fn, keras_model_or_path)
    steps = _plan(fn, keras_model)
    variables: Dict[str, Dict[str, Any]] = {}
    for i, step in enumerate(steps):
        if not step.weights:
            continue
        have = _keras_weights(fn, step)
        for w in step.weights:
            value = np.asarray(have[w.keras_name].numpy(), np.float32)
            variables.setdefault(w.collection, {}).setdefault(f"layers_{i}", {})[w.name] = jnp.asarray(
                w.to_cnnjax(value))
    model = L.Sequential([step.module for step in steps])
    _check_structure(fn, model, variables, keras_model)
    return model, variables


def _check_structure(fn: str, model, variables, keras_model) -> None:
    """The variables' shapes equal those ``model.init`` makes for Keras' input shape (a bug guard)."""
    shape = tuple(keras_model.inputs[0].shape) if getattr(keras_model, "inputs", None) else None
    if shape is None or any(d is None for d in shape[1:]):
        return
    x = jax.ShapeDtypeStruct((1, *shape[1:]), jnp.float32)
    expected = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)
    got = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), variables)
    if jax.tree_util.tree_structure(expected) != jax.tree_util.tree_structure(got) or \
            jax.tree_util.tree_leaves(expected) != jax.tree_util.tree_leaves(got):
        raise RuntimeError(f"{fn}: the converted variables do not fit the converted model (a cnnjax bug); "
                             f"model.init makes {expected}, the conversion made {got}.")


def _variables_of(fn: str, variables) -> Mapping:
    """``variables`` as a mapping of collections; a TrainState (``.params``, ``.batch_stats``) is accepted."""
    if hasattr(variables, "params") and not isinstance(variables, Mapping):
        return {"params": variables.params, "batch_stats": getattr(variables, "batch_stats", None) or {}}
    if not isinstance(variables, Mapping) or "params" not in variables:
        raise TypeError(f"{fn}: variables must be the dict model.init or from_keras gives ({{'params': ..., "
                        f"maybe 'batch_stats': ...}}) or a TrainState, got {type(variables).__name__}.")
    return variables


def to_keras(variables, keras_model):
    """Writes cnnjax ``variables`` into ``keras_model`` (in place) and returns ``keras_model``.

    Args:
      variables: variables of the model :func:`from_keras` makes of ``keras_model`` (``{"params": ...,
        "batch_stats": ...}``, e.g. after training), or a ``cnnjax.train`` TrainState.
      keras_model: the built Keras model they are written into (its layers as :func:`from_keras` reads them).

    Every weight is checked before any is written: a missing or extra layer entry, or a shape that differs from
    the Keras weight's, raises ValueError naming the Keras layer, the weight and both shapes. Keras'
    BatchNormalization moving statistics are taken from ``"batch_stats"``.
    """
    fn = "to_keras"
    if isinstance(keras_model, (str, os.PathLike)):
        raise TypeError(f"{fn}: keras_model must be a Keras model object, got the path {os.fspath(keras_model)!r}; "
                        "load it with keras.saving.load_model(path), write into it, then model.save(path).")
    variables = _variables_of(fn, variables)
    steps = _plan(fn, keras_model)
    writes = []
    used = {collection: set() for collection in variables}
    for i, step in enumerate(steps):
        if not step.weights:
            continue
        have = _keras_weights(fn, step)
        key = f"layers_{i}"
        for w in step.weights:
            try:
                value = variables[w.collection][key][w.name]
            except (KeyError, TypeError):
                raise ValueError(f"{fn}: variables[{w.collection!r}][{key!r}][{w.name!r}] is missing; it holds "
                                 f"{_where(step.keras_layer)}'s {w.keras_name!r}. Are these the variables of "
                                 "from_keras(keras_model)'s model?") from None
            used[w.collection].add(key)
            target = have[w.keras_name]
            shape = tuple(target.shape)
            value = np.asarray(value)
            expected = w.to_cnnjax(np.zeros(shape, np.float32)).shape
            if value.shape != expected:
                raise ValueError(
                    f"{fn}: {_where(step.keras_layer)}'s {w.keras_name!r} has shape {shape}, which is {expected} in "
                    f"cnnjax's layout, but variables[{w.collection!r}][{key!r}][{w.name!r}] has shape "
                    f"{value.shape}; were the variables made for another input shape or model?")
            value = w.to_keras(value, shape)
            writes.append((target, value.astype(np.dtype(target.dtype))))
    for collection, entries in variables.items():
        extra = sorted(set(entries or {}) - used.get(collection, set()))
        if extra:
            raise ValueError(f"{fn}: variables[{collection!r}] has entries {extra} that no layer of the Keras model "
                             f"{keras_model.name!r} takes; are these the variables of from_keras(keras_model)'s "
                             "model?")
    for target, value in writes:
        target.assign(value)
    return keras_model
