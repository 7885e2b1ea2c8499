"""A Keras-style model summary that explains its numbers, computed with ``jax.eval_shape`` (no FLOPs).

``summary(model, (28, 28, 1))`` prints one row per layer, as ``keras.Model.summary()`` does: its name and type,
its output shape (batch as ``None``) and its parameter count, then the totals. ``formulas=True`` adds how each
number came out: the output size per spatial axis (``(28 - 3)/1 + 1 = 26``), the parameter count
(``3*3*1*32 + 32 = 320``), the receptive field and cumulative stride ("jump") of each layer's output, and a note
where a window leaves trailing input cells unused (the lecture's "information loss").

How the rows are found: every module's ``__call__`` is intercepted (``flax.linen.intercept_methods``) while
``model.init`` runs under ``jax.eval_shape``, so nothing is computed and models too big to run still work. A row
is a module that calls no other module while it runs (a layer), in call order; a composite module (a block, a
``Sequential``) only gets a row for variables it declares itself. Names follow Keras (``conv2d``, ``conv2d_1``,
...) unless a layer was given a name.

Receptive field ``r`` and jump ``j`` per spatial axis, starting from ``r = j = 1`` at the input::

    conv / pool:        r_out = r_in + (k_eff - 1) * j_in,   j_out = j_in * s
    transposed conv:    j_out = j_in / s,                    r_out = r_in + (k_eff - 1) * j_out

Flatten, Dense on a flat input and global pooling see the whole input ("all"). Where a layer's input was made by
plain functions rather than a layer (a residual add, ``jax.nn.relu``), it is matched to the latest layer output
of the same shape; a composite module's output takes the largest receptive field among its layers with that
shape (right for residual blocks). Exact for sequential models.
"""
from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Any, Dict, List, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnjax import _args, shapes
from cnnjax.layers import conv as _conv
from cnnjax.layers import dense as _dense
from cnnjax.layers import pool as _pool
from cnnjax.nnx.adapter import as_linen, is_nnx
from cnnjax.params import check_model, count_params

__all__ = ["summary", "layer_table"]

_AXIS_NAMES = {1: ("W",), 2: ("H", "W"), 3: ("D", "H", "W")}
_ALL = "all"      # receptive field of a layer that sees the whole input
_UNKNOWN = "?"


def _snake(name: str) -> str:
    """Keras' ``to_snake_case``: ``MaxPooling2D`` -> ``max_pooling2d``, ``Conv2D`` -> ``conv2d``."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _fmt_int(n: int) -> str:
    return f"{n:,}"


def _fmt_frac(v: Fraction) -> str:
    return str(v.numerator) if v.denominator == 1 else f"{v.numerator}/{v.denominator}"


# --------------------------------------------------------------------------------------------------- tracing
class _Call:
    """One intercepted ``__call__``: the module, its first input and its output (shape structs)."""

    def __init__(self, module: nn.Module, inputs: Any):
        self.module = module
        self.path: Tuple[str, ...] = tuple(module.path)
        self.inputs = inputs
        self.output: Any = None
        self.leaf = True
        self.first = 0                 # index in the finished list of the first call made inside this one
        self.state: Any = _UNKNOWN     # receptive field state of the output


def _trace(model: nn.Module, input_shape: Sequence[int], dtype) -> Tuple[List[_Call], List[_Call], Any, Any]:
    started: List[_Call] = []
    finished: List[_Call] = []
    stack: List[_Call] = []

    def interceptor(next_fun, args, kwargs, context):
        if context.method_name != "__call__" or not args:
            return next_fun(*args, **kwargs)
        call = _Call(context.module, args[0])
        if stack:
            stack[-1].leaf = False      # a call made while another runs: the outer one is not a layer
        call.first = len(finished)
        started.append(call)
        stack.append(call)
        try:
            out = next_fun(*args, **kwargs)
        finally:
            stack.pop()
        call.output = out
        finished.append(call)
        return out

    key = jax.random.key(0)
    x = jax.ShapeDtypeStruct((1, *input_shape), dtype)
    captured = {}

    def init(x):
        captured["x"] = x
        return model.init({"params": key, "dropout": key}, x)

    with nn.intercept_methods(interceptor):
        variables = jax.eval_shape(init, x)
    return started, finished, variables, captured["x"]


def _subtree(tree: Any, path: Tuple[str, ...]) -> Any:
    for name in path:
        if not isinstance(tree, dict) or name not in tree:
            return None
        tree = tree[name]
    return tree


_PARAM_ORDER = {"kernel": 0, "scale": 1, "bias": 2, "mean": 3, "var": 4}


def _own_variables(variables: Dict[str, Any], path: Tuple[str, ...], leaf: bool):
    """[(collection, name, shape)] declared by the module at ``path`` (for a composite: not its children's)."""
    found = []
    for collection, tree in variables.items():
        sub = _subtree(tree, path)
        if sub is None:
            continue
        if not isinstance(sub, dict):
            found.append((collection, path[-1] if path else collection, tuple(sub.shape)))
            continue
        for name, value in sub.items():
            if not isinstance(value, dict):
                found.append((collection, name, tuple(value.shape)))
            elif leaf:
                for leaf_value in jax.tree_util.tree_leaves(value):
                    found.append((collection, name, tuple(leaf_value.shape)))
    found.sort(key=lambda item: (item[0] != "params", _PARAM_ORDER.get(item[1], 9), item[1]))
    return found


# ------------------------------------------------------------------------------------------------ geometry
def _layout(module: nn.Module, ndim: int) -> Tuple[Tuple[int, ...], int]:
    """(spatial axes, channel axis) of an input of rank ``ndim`` for the module's data format."""
    fmt = getattr(module, "data_format", "channels_last")
    try:
        fmt = _args.data_format(fmt, max(ndim - 2, 1), "summary")
    except (TypeError, ValueError):
        fmt = "channels_last"
    return _args.spatial_axes(fmt, ndim), _args.channel_axis(fmt, ndim)


def _window(module: nn.Module, n: int):
    """(kind, kernel, strides, dilation, padding) of a windowed layer with ``n`` spatial axes, else None."""
    if isinstance(module, _conv._ConvTranspose):
        kind = "transpose"
    elif isinstance(module, (_conv._Conv, _conv.DepthwiseConv2D)):
        kind = "conv"
    elif isinstance(module, _pool._Pool):
        kind = "pool"
    else:
        return None
    if kind == "pool":
        kernel = _args.as_int_tuple(module.pool_size, n, "pool_size", "summary")
        strides = kernel if module.strides is None else _args.as_int_tuple(module.strides, n, "strides", "summary")
        dilation = (1,) * n
    else:
        kernel = _args.as_int_tuple(module.kernel_size, n, "kernel_size", "summary")
        strides = _args.as_int_tuple(module.strides, n, "strides", "summary")
        dilation = _args.as_int_tuple(module.dilation_rate, n, "dilation_rate", "summary")
    pad = _args.padding(module.padding, n, "summary")
    pads = [pad] * n if isinstance(pad, str) else list(pad)
    return kind, kernel, strides, dilation, pads


def _axis_formula(kind: str, size: int, k: int, s: int, d: int, pad, out: int, ceil_mode: bool) -> str:
    k_eff = shapes.effective_kernel_size(k, d)
    if kind == "transpose":
        if pad == "VALID":
            return f"{size}*{s} + max({k_eff} - {s}, 0) = {out}"
        if pad == "SAME":
            return f"{size}*{s} = {out}"
        lo, hi = pad
        return f"({size} - 1)*{s} + {k_eff} - {lo} - {hi} = {out}"
    if pad == "SAME":
        lo, hi = shapes.padding_amounts(size, k, s, "same", d)
        return f"ceil({size}/{s}) = {out}" + (f" (pad {lo}+{hi})" if lo or hi else "")
    lo, hi = (0, 0) if pad == "VALID" else pad
    padded = f"{size}" + ("" if lo == hi == 0 else f" + 2*{lo}" if lo == hi else f" + {lo} + {hi}")
    span = size + lo + hi - k_eff
    if ceil_mode:
        return f"ceil(({padded} - {k_eff})/{s}) + 1 = {out}"
    if span % s:
        return f"floor(({padded} - {k_eff})/{s}) + 1 = {out}"
    return f"({padded} - {k_eff})/{s} + 1 = {out}"


def _join_axes(parts: List[str], n: int) -> str:
    if len(set(parts)) == 1:
        return parts[0]
    return "; ".join(f"{name}: {part}" for name, part in zip(_AXIS_NAMES.get(n, ("?",) * n), parts))


def _shape_of(tree) -> Optional[Tuple[int, ...]]:
    leaves = jax.tree_util.tree_leaves(tree)
    return tuple(leaves[0].shape) if len(leaves) == 1 and hasattr(leaves[0], "shape") else None


def _explain(call: _Call) -> Tuple[str, str]:
    """(output-size formula, note) for one layer."""
    module = call.module
    in_shape, out_shape = _shape_of(call.inputs), _shape_of(call.output)
    if in_shape is None or out_shape is None:
        return "", ""
    if isinstance(module, _dense.Flatten):
        return "*".join(str(s) for s in in_shape[1:]) + f" = {out_shape[-1]}", ""
    if isinstance(module, _pool._GlobalPool) and len(in_shape) >= 3:
        spatial, _ = _layout(module, len(in_shape))
        op = "mean" if "Average" in type(module).__name__ else "max"
        return f"{op} over {_args.fmt_sizes([in_shape[a] for a in spatial])}", ""
    if isinstance(module, _pool.ChannelMaxPool) and len(in_shape) >= 3:
        _, channel = _layout(module, len(in_shape))
        k = module.pool_size
        s = k if module.strides is None else module.strides
        c_in, c_out = in_shape[channel], out_shape[channel]
        return f"channels: ({c_in} - {k})/{s} + 1 = {c_out}", ""
    n = len(in_shape) - 2
    if n < 1:
        return "", ""
    window = _window(module, n)
    if window is None:
        return "", ""
    kind, kernel, strides, dilation, pads = window
    spatial_in, _ = _layout(module, len(in_shape))
    spatial_out, _ = _layout(module, len(out_shape))
    ceil_mode = bool(getattr(module, "ceil_mode", False))
    parts, unused, gaps = [], [], False
    for axis, (a_in, a_out) in enumerate(zip(spatial_in, spatial_out)):
        size, out = in_shape[a_in], out_shape[a_out]
        k, s, d, pad = kernel[axis], strides[axis], dilation[axis], pads[axis]
        parts.append(_axis_formula(kind, size, k, s, d, pad, out, ceil_mode))
        if kind != "transpose" and not ceil_mode:
            lost = shapes.unused_input(size, k, s, pad.lower() if isinstance(pad, str) else pad, d)
            unused.append(lost)
            gaps = gaps or s > shapes.effective_kernel_size(k, d)
    notes = []
    if any(unused):
        names = _AXIS_NAMES.get(n, ("?",) * n)
        notes.append("unused input: " + ", ".join(f"last {u} ({name})" for u, name in zip(unused, names) if u))
    if gaps:
        notes.append("stride > window: cells between windows unused")
    if max(dilation) > 1:
        spans = [shapes.effective_kernel_size(k, d) for k, d in zip(kernel, dilation)]
        notes.append(f"dilated kernel spans {_args.fmt_sizes(spans)}")
    return _join_axes(parts, n), "; ".join(notes)


def _param_formula(own) -> str:
    if not own:
        return ""
    terms = []
    for collection, _, shape in own:
        term = "*".join(str(s) for s in shape) if shape else "1"
        terms.append(term if collection == "params" else f"[{term}]")
    total = sum(math.prod(shape) for _, _, shape in own)
    formula = " + ".join(terms)
    return formula if len(terms) == 1 and "*" not in formula else f"{formula} = {_fmt_int(total)}"


# ------------------------------------------------------------------------------------- receptive field
def _next_state(call: _Call, state):
    """Receptive field and jump per spatial axis after ``call``, given its input's."""
    module = call.module
    in_shape, out_shape = _shape_of(call.inputs), _shape_of(call.output)
    if in_shape is None or out_shape is None:
        return _UNKNOWN
    if isinstance(module, (_dense.Flatten, _pool._GlobalPool)) or (
            isinstance(module, _dense.Dense) and len(in_shape) <= 2):
        return _ALL
    if state in (_ALL, _UNKNOWN):
        return state
    n = len(in_shape) - 2
    window = _window(module, n) if n >= 1 else None
    if window is None:      # Dense on feature maps, BatchNorm, Dropout, ChannelMaxPool, ...: spatial axes kept?
        if len(in_shape) != len(out_shape) or n < 1:
            return _UNKNOWN
        spatial, _ = _layout(module, len(in_shape))
        return state if all(in_shape[a] == out_shape[a] for a in spatial) else _UNKNOWN
    if len(state) != n:
        return _UNKNOWN
    kind, kernel, strides, dilation, _ = window
    result = []
    for (r, j), k, s, d in zip(state, kernel, strides, dilation):
        k_eff = shapes.effective_kernel_size(k, d)
        if kind == "transpose":
            j = j / s
            result.append((r + (k_eff - 1) * j, j))
        else:
            result.append((r + (k_eff - 1) * j, j * s))
    return tuple(result)


def _fmt_state(state) -> Tuple[str, str]:
    if state in (_ALL, _UNKNOWN):
        return state, "" if state == _ALL else _UNKNOWN
    rf = [_fmt_frac(r) for r, _ in state]
    jump = [_fmt_frac(j) for _, j in state]
    join = lambda v: v[0] if len(set(v)) == 1 else "x".join(v)  # noqa: E731
    return join(rf), join(jump)


def _receptive_fields(finished: List[_Call], x, input_shape) -> None:
    n = len(input_shape) - 1
    states = {id(x): tuple((Fraction(1), Fraction(1)) for _ in range(max(n, 0)))}
    history: List[Tuple[Optional[Tuple[int, ...]], Any]] = []

    def lookup(tree):
        leaves = jax.tree_util.tree_leaves(tree)
        if len(leaves) == 1 and id(leaves[0]) in states:
            return states[id(leaves[0])]
        shape = _shape_of(tree)
        for seen_shape, state in reversed(history):
            if seen_shape == shape:
                return state
        return history[-1][1] if history else _UNKNOWN

    for position, call in enumerate(finished):
        start = call.first
        if call.leaf:
            call.state = _next_state(call, lookup(call.inputs))
        else:
            shape = _shape_of(call.output)
            inner = [c for c in finished[start:position] if c.leaf and _shape_of(c.output) == shape
                     and isinstance(c.state, tuple)]
            if inner:
                call.state = max((c.state for c in inner), key=lambda st: tuple(r for r, _ in st))
            else:
                call.state = history[-1][1] if history else _UNKNOWN
        leaves = jax.tree_util.tree_leaves(call.output)
        if len(leaves) == 1:
            states[id(leaves[0])] = call.state
        history.append((_shape_of(call.output), call.state))


# ----------------------------------------------------------------------------------------------- table
def _auto_named(module: nn.Module) -> bool:
    name = module.name
    return name is None or re.fullmatch(rf"({re.escape(type(module).__name__)}|layers)_\d+", name) is not None


def _fmt_shape(tree) -> str:
    parts = []
    for leaf in jax.tree_util.tree_leaves(tree):
        shape = tuple(getattr(leaf, "shape", ()))
        dims = ["None", *map(str, shape[1:])] if shape else []
        parts.append("(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")")
    return ", ".join(parts) if parts else "()"


def layer_table(model: nn.Module, input_shape: Sequence[int], *, dtype=jnp.float32) -> Dict[str, Any]:
    """The summary's data: ``{"rows": [dict per layer], "trainable": int, "non_trainable": int}``.

    Each row has ``name``, ``type``, ``output_shape`` (with the batch axis), ``params`` (own trainable and
    non-trainable), ``shape_formula``, ``param_formula``, ``receptive_field``, ``jump`` and ``note``.
    """
    model = as_linen(model) if is_nnx(model) else model       # an NNX model: its linen view
    check_model("layer_table", model)
    input_shape = _check_input_shape(input_shape)
    started, finished, variables, x = _trace(model, input_shape, dtype)
    _receptive_fields(finished, x, input_shape)
    counters: Dict[str, int] = {}
    seen_paths = set()
    rows = []
    for call in started:
        first = call.path not in seen_paths
        seen_paths.add(call.path)
        own = _own_variables(variables, call.path, call.leaf) if first else []
        if not call.leaf and not own:
            continue
        type_name = type(call.module).__name__
        if _auto_named(call.module):
            base = _snake(type_name)
            count = counters.get(base, 0)
            counters[base] = count + 1
            name = base if count == 0 else f"{base}_{count}"
        else:
            name = call.module.name
        shape_formula, note = _explain(call) if call.leaf else ("", "")
        rf, jump = _fmt_state(call.state)
        rows.append({
            "name": name, "type": type_name, "path": "/".join(call.path),
            "output_shape": _shape_of(call.output), "output": _fmt_shape(call.output),
            "trainable": sum(math.prod(s) for c, _, s in own if c == "params"),
            "non_trainable": sum(math.prod(s) for c, _, s in own if c != "params"),
            "shape_formula": shape_formula, "param_formula": _param_formula(own),
            "receptive_field": rf, "jump": jump, "note": note,
        })
    trainable = count_params(variables.get("params", {}))
    non_trainable = sum(count_params(tree) for col, tree in variables.items() if col != "params")
    return {"rows": rows, "trainable": trainable, "non_trainable": non_trainable}


def _check_input_shape(input_shape) -> Tuple[int, ...]:
    if isinstance(input_shape, int):
        input_shape = (input_shape,)
    if (not isinstance(input_shape, (tuple, list)) or not input_shape
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in input_shape)):
        raise ValueError(
            f"summary: input_shape={input_shape!r} must be a tuple of positive ints without the batch axis, "
            f"e.g. (28, 28, 1) for MNIST.")
    return tuple(input_shape)


def summary(model: nn.Module, input_shape: Sequence[int], *, formulas: bool = False, dtype=jnp.float32,
            name: Optional[str] = None) -> str:
    """A Keras-style table of ``model``'s layers for inputs of shape ``(batch, *input_shape)``.

    Args:
      model: a Flax linen Module called as ``model(x)`` (``train`` left at its default), or a Flax NNX Module
        (summarised through :func:`cnnjax.nnx.as_linen`: its rows are its layer calls).
      input_shape: one example's shape without the batch axis, e.g. ``(28, 28, 1)``.
      formulas: add columns showing how each output size and parameter count came out, the receptive field
        ("RF") and cumulative stride ("Jump") of each layer's output, and a note where a window leaves input
        unused. Bracketed terms in the parameter formula are non-trainable (BatchNorm statistics).
      dtype: the input's dtype.
      name: the name in the header (default: the model's name, or its class in snake case).

    Returns:
      The table as a string (print it). Parameters: ``Total = Trainable + Non-trainable``; trainable are the
      ``"params"`` collection, non-trainable every other (e.g. ``"batch_stats"``).
    """
    model = as_linen(model) if is_nnx(model) else model
    check_model("summary", model)
    table = layer_table(model, input_shape, dtype=dtype)
    header = ["Layer (type)", "Output Shape", "Param #"]
    body = [[f"{row['name']} ({row['type']})", row["output"], _fmt_int(row["trainable"] + row["non_trainable"])]
            for row in table["rows"]]
    if formulas:
        header += ["Output size", "Param formula", "RF", "Jump"]
        for line, row in zip(body, table["rows"]):
            line += [row["shape_formula"], row["param_formula"], row["receptive_field"], row["jump"]]
        if any(row["note"] for row in table["rows"]):
            header.append("Note")
            for line, row in zip(body, table["rows"]):
                line.append(row["note"])
    widths = [max(len(h), *(len(line[i]) for line in body)) if body else len(h) for i, h in enumerate(header)]
    right = {2} | ({5, 6} if formulas else set())

    def fmt(cells):
        out = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return (" " + "   ".join(out)).rstrip()

    width = max(40, len(fmt(header)), *(len(fmt(line)) for line in body))
    title = name or model.name or _snake(type(model).__name__)
    total = table["trainable"] + table["non_trainable"]
    lines = [f'Model: "{title}"', "_" * width, fmt(header), "=" * width]
    lines += [fmt(line) for line in body]
    lines += ["=" * width,
              f"Total params: {_fmt_int(total)}",
              f"Trainable params: {_fmt_int(table['trainable'])}",
              f"Non-trainable params: {_fmt_int(table['non_trainable'])}",
              "_" * width]
    return "\n".join(lines)
