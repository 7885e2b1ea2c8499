"""Shape and parameter formulas, as plain Python ints: usable before any array exists.

Every op in :mod:`cnnjax.functional` takes its output shape from here, and the property tests hold each formula
against ``jax.eval_shape`` of the op. Per spatial axis, with input size ``n``, kernel ``k``, stride ``s``,
dilation ``d`` and padding ``(lo, hi)``::

    k_eff = d * (k - 1) + 1                       # the span of a dilated kernel
    out   = (n + lo + hi - k_eff) // s + 1        # floor: trailing cells that do not fit a window are unused

``padding="valid"`` means ``lo = hi = 0``. ``padding="same"`` is TensorFlow/Keras' rule: ``out = ceil(n / s)``,
and the total padding ``max((out - 1) * s + k_eff - n, 0)`` is split with the extra cell at the end
(bottom/right): ``lo = total // 2``, ``hi = total - lo``.

Parameters: a conv layer has ``prod(kernel) * (D / groups) * K + K`` (the lecture's ``K*F*F*D + K``), a dense
layer ``in * units + units``.

Symbolic sizes: the batch, spatial and channel sizes of a shape may be ``jax.export`` symbolic dimensions (e.g.
``jax.export.symbolic_shape("b")``, for exporting a model with a symbolic batch); the formulas then return
symbolic sizes (``floordiv(h - 3, 2) + 1``). A check that cannot be decided for every value of the symbols (a
kernel larger than a symbolic input ``h``?) is skipped, not failed: jax.export checks the concrete shapes when
the exported function is called. Kernel sizes, strides, dilations, paddings, pool sizes and groups stay ints;
``ceil_mode=True`` raises ValueError where whether the last partial window is kept depends on a symbolic size's
value. No jax import here: ``cnnjax._args`` detects symbols (lazily, once jax is loaded).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

from cnnjax import _args

__all__ = [
    "conv_output_size", "padding_amounts", "conv_output_shape", "conv_transpose_output_size",
    "conv_transpose_output_shape", "pool_output_size", "pool_output_shape", "global_pool_output_shape",
    "channel_pool_output_shape", "conv_params", "dense_params", "unused_input", "effective_kernel_size",
]


def effective_kernel_size(kernel_size: int, dilation: int = 1) -> int:
    """The span of a dilated kernel: ``d * (k - 1) + 1``."""
    fn = "effective_kernel_size"
    kernel_size = _int_arg(kernel_size, "kernel_size", fn)
    dilation = _int_arg(dilation, "dilation", fn)
    return dilation * (kernel_size - 1) + 1


def _int_arg(value, name, fn, *, minimum=1) -> int:
    """One int argument (a Python or NumPy int, not a bool) of at least ``minimum``, as a Python int."""
    if not _args.is_int(value):
        raise TypeError(f"{fn}: {name} must be an int, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{fn}: {name}={value!r} must be >= {minimum}.")
    return int(value)


def check_flag(value, name, fn) -> bool:
    """``value`` as a bool: a Python bool or a NumPy ``bool_``; TypeError for anything else (a string such as
    ``'False'`` is truthy, so it would silently mean True)."""
    if isinstance(value, bool):
        return value
    if type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_"):
        return bool(value)
    raise TypeError(f"{fn}: {name} must be a bool, got {value!r}.")


def _check_dim(value, what, fn, *, minimum=1, where=""):
    """One dimension of a shape: an int (Python or NumPy, not a bool) of at least ``minimum``, or a ``jax.export``
    symbolic size (rejected only where it is surely below ``minimum``)."""
    if not _args.is_dim(value) or _args.surely(lambda: value < minimum):
        need = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{fn}: {what} {value!r}{where} must be {need}.")


def _shape_tuple(shape, name, fn) -> Tuple:
    if not isinstance(shape, (tuple, list)):
        raise TypeError(f"{fn}: {name} must be a tuple of ints, got {shape!r}.")
    return tuple(shape)


def _check_kernel_dims(kernel_shape, fn):
    for axis, dim in enumerate(kernel_shape):
        _check_dim(dim, "kernel dimension", fn, where=f" (axis {axis} of kernel shape {kernel_shape})")


def _axis_pair(size, kernel_size, strides, padding, dilation, fn) -> Tuple[int, int]:
    """(lo, hi) padding of one axis for a padding given as 'valid'/'same'/int/(lo, hi)."""
    if isinstance(padding, str):
        key = _args.padding(padding, 1, fn)
        if key == "VALID":
            return 0, 0
        out = -(-size // strides)
        total = _args.dim_max((out - 1) * strides + effective_kernel_size(kernel_size, dilation) - size, 0)
        return total // 2, total - total // 2
    if isinstance(padding, (tuple, list)) and len(padding) == 2:
        (pair,) = _args.padding([tuple(padding)], 1, fn)
        return pair
    (pair,) = _args.padding(padding, 1, fn)
    return pair


def _check_axis(size, kernel_size, strides, dilation, fn, *, kernel_name="kernel_size"):
    """Checks the scalar arguments of a one-axis formula; returns them as Python ints (a symbolic size as it is)."""
    _check_dim(size, "input size", fn)
    return (_args.as_dim(size), _int_arg(kernel_size, kernel_name, fn), _int_arg(strides, "strides", fn),
            _int_arg(dilation, "dilation", fn))


def padding_amounts(size: int, kernel_size: int, strides: int = 1, padding="same",
                    dilation: int = 1) -> Tuple[int, int]:
    """The (low, high) zero padding of one axis.

    For ``"same"`` (TensorFlow/Keras): ``out = ceil(size / strides)``, ``total = max((out - 1) * strides +
    k_eff - size, 0)``, ``low = total // 2`` and ``high = total - low`` (the odd cell goes at the end).
    ``"valid"`` gives ``(0, 0)``; an int ``p`` gives ``(p, p)``; a pair is returned as it is.

    >>> padding_amounts(11, 6, strides=4)   # the lecture's 11x11 input, 6x6 kernel, stride 4
    (1, 2)
    """
    fn = "padding_amounts"
    size, kernel_size, strides, dilation = _check_axis(size, kernel_size, strides, dilation, fn)
    return _axis_pair(size, kernel_size, strides, padding, dilation, fn)


def conv_output_size(size: int, kernel_size: int, strides: int = 1, padding="valid", dilation: int = 1) -> int:
    """Output length of one axis of a convolution: ``(n + lo + hi - k_eff) // s + 1``.

    >>> conv_output_size(28, 3)                           # (28 - 3) / 1 + 1
    26
    >>> conv_output_size(7, 3, strides=3)                 # (7 - 3) / 3 + 1 = 2.33 -> 2: one row unused
    2
    >>> conv_output_size(28, 5, strides=2, padding=2)     # (28 + 4 - 5) / 2 + 1 = 14.5 -> 14
    14

    Raises ValueError when the (dilated) kernel is longer than the padded input.
    """
    return _conv_axis(size, kernel_size, strides, padding, dilation, "conv_output_size")


def _conv_axis(size, kernel_size, strides, padding, dilation, fn):
    size, kernel_size, strides, dilation = _check_axis(size, kernel_size, strides, dilation, fn)
    lo, hi = _axis_pair(size, kernel_size, strides, padding, dilation, fn)
    k_eff = effective_kernel_size(kernel_size, dilation)
    if _args.surely(lambda: k_eff > size + lo + hi):
        raise ValueError(
            f"{fn}: kernel {kernel_size} (dilation {dilation}, spans {k_eff}) is larger than the padded input "
            f"{size + lo + hi} with padding={padding!r}; use padding='same' or a smaller kernel.")
    return (size + lo + hi - k_eff) // strides + 1


def unused_input(size: int, kernel_size: int, strides: int = 1, padding="valid", dilation: int = 1) -> int:
    """How many trailing input cells of one axis no window ever covers (the notes' "information loss").

    >>> unused_input(7, 3, strides=3)    # windows start at 0 and 3 and cover cells 0..5: cell 6 is never seen
    1
    >>> unused_input(11, 6, strides=4)   # windows at 0 and 4 cover 0..9
    1
    """
    fn = "unused_input"
    out = _conv_axis(size, kernel_size, strides, padding, dilation, fn)
    size, kernel_size, strides, dilation = _check_axis(size, kernel_size, strides, dilation, fn)
    lo, _ = _axis_pair(size, kernel_size, strides, padding, dilation, fn)
    last_covered = -lo + (out - 1) * strides + effective_kernel_size(kernel_size, dilation)
    return _args.dim_max(0, size - last_covered)


def _split_shape(input_shape, n, fmt, fn):
    """(batch, spatial, channels) of an input shape, checked: rank ``n + 2``, a batch >= 0 (an empty batch is a
    real array), spatial sizes and channels >= 1, all ints or ``jax.export`` symbolic sizes."""
    input_shape = _shape_tuple(input_shape, "input_shape", fn)
    if len(input_shape) != n + 2:
        layout = _args.layout_names(fmt, n)[0]
        raise ValueError(
            f"{fn}: input of shape {input_shape} has rank {len(input_shape)}, but a {n}-D op needs rank "
            f"{n + 2} (batch, {n} spatial axes, channels: {layout}).")
    channel = _args.channel_axis(fmt, n + 2)
    for axis, dim in enumerate(input_shape):
        what = "batch size" if axis == 0 else "input channels" if axis == channel else "input size"
        _check_dim(dim, what, fn, minimum=0 if axis == 0 else 1,
                   where=f" (axis {axis} of input shape {input_shape})")
    input_shape = tuple(_args.as_dim(d) for d in input_shape)
    if fmt == "channels_last":
        return input_shape[0], input_shape[1:-1], input_shape[-1]
    return input_shape[0], input_shape[2:], input_shape[1]


def _join_shape(batch, spatial, channels, fmt):
    if fmt == "channels_last":
        return (batch, *spatial, channels)
    return (batch, channels, *spatial)


def conv_pairs(input_shape, kernel_shape, strides=1, padding="valid", dilation=1, groups=1,
               data_format="channels_last", fn="conv"):
    """Checks a convolution's arguments; returns (output shape, padding pairs, strides, dilation, format)."""
    kernel_shape = _shape_tuple(kernel_shape, "kernel_shape", fn)
    n = len(kernel_shape) - 2
    if n not in (1, 2, 3):
        raise ValueError(
            f"{fn}: kernel of shape {kernel_shape} has rank {len(kernel_shape)}; a kernel is "
            f"(spatial..., in_channels // groups, filters) with 1, 2 or 3 spatial axes (rank 3, 4 or 5).")
    _check_kernel_dims(kernel_shape, fn)
    kernel_shape = tuple(int(d) for d in kernel_shape)
    fmt = _args.data_format(data_format, n, fn)
    batch, spatial, channels = _split_shape(input_shape, n, fmt, fn)
    ksize, k_in, filters = kernel_shape[:-2], kernel_shape[-2], kernel_shape[-1]
    strides = _args.as_int_tuple(strides, n, "strides", fn)
    dilation = _args.as_int_tuple(dilation, n, "dilation", fn)
    if not _args.is_int(groups) or groups < 1:
        raise ValueError(f"{fn}: groups={groups!r} must be an int >= 1.")
    groups = int(groups)
    if _args.surely(lambda: channels % groups >= 1):
        raise ValueError(
            f"{fn}: the input has {channels} channels, which is not divisible by groups={groups}.")
    if channels // groups != k_in:
        raise ValueError(
            f"{fn}: the input has {channels} channels (groups={groups}), so the kernel needs "
            f"{channels // groups} input channels (axis -2), but kernel of shape {kernel_shape} has {k_in}.")
    if filters % groups:
        raise ValueError(
            f"{fn}: kernel has {filters} filters, which is not divisible by groups={groups}.")
    pad = _args.padding(padding, n, fn)
    if isinstance(pad, str):
        pairs = tuple(_axis_pair(size, k, s, pad, d, fn) for size, k, s, d in zip(spatial, ksize, strides, dilation))
    else:
        pairs = pad
    k_eff = [effective_kernel_size(k, d) for k, d in zip(ksize, dilation)]
    padded = [size + lo + hi for size, (lo, hi) in zip(spatial, pairs)]
    if any(_args.surely(lambda: ke > p) for ke, p in zip(k_eff, padded)):
        dil = (f" with dilation {_args.fmt_sizes(dilation)} (spans {_args.fmt_sizes(k_eff)})"
               if max(dilation) > 1 else "")
        raise ValueError(
            f"{fn}: kernel {_args.fmt_sizes(ksize)}{dil} is larger than the padded input "
            f"{_args.fmt_sizes(padded)} with padding={padding!r}; use padding='same' or a smaller kernel.")
    out_spatial = tuple((p - ke) // s + 1 for p, ke, s in zip(padded, k_eff, strides))
    return _join_shape(batch, out_spatial, filters, fmt), pairs, strides, dilation, fmt


def conv_output_shape(input_shape: Sequence[int], kernel_shape: Sequence[int], strides=1, padding="valid",
                      dilation=1, groups: int = 1, data_format: str = "channels_last") -> Tuple[int, ...]:
    """Output shape of :func:`cnnjax.functional.conv`.

    Input ``(N, *spatial, C)`` (or ``(N, C, *spatial)``), kernel ``(*k, C // groups, K)`` → output
    ``(N, *out, K)`` with ``out`` from :func:`conv_output_size` per axis.

    >>> conv_output_shape((1, 32, 32, 3), (5, 5, 3, 6))
    (1, 28, 28, 6)
    """
    return conv_pairs(input_shape, kernel_shape, strides, padding, dilation, groups, data_format,
                      fn="conv_output_shape")[0]


def conv_transpose_output_size(size: int, kernel_size: int, strides: int = 1, padding="valid",
                               dilation: int = 1) -> int:
    """Output length of one axis of a transposed convolution (Keras' rule; the inverse map of conv).

    ``"valid"``: ``n * s + max(k_eff - s, 0)``; ``"same"``: ``n * s``; explicit ``(lo, hi)`` (the padding of
    the forward convolution it transposes): ``(n - 1) * s + k_eff - lo - hi``.
    """
    return _transpose_axis(size, kernel_size, strides, padding, dilation, "conv_transpose_output_size")


def _transpose_axis(size, kernel_size, strides, padding, dilation, fn, given=None):
    size, kernel_size, strides, dilation = _check_axis(size, kernel_size, strides, dilation, fn)
    k_eff = effective_kernel_size(kernel_size, dilation)
    if isinstance(padding, str):
        key = _args.padding(padding, 1, fn)
        return size * strides + max(k_eff - strides, 0) if key == "VALID" else size * strides
    lo, hi = _axis_pair(size, kernel_size, strides, padding, dilation, fn)
    out = (size - 1) * strides + k_eff - lo - hi
    if _args.surely(lambda: out < 1):
        raise ValueError(f"{fn}: padding={padding if given is None else given!r} removes the whole output "
                         f"(size {out}).")
    return out


def conv_transpose_output_shape(input_shape, kernel_shape, strides=1, padding="valid", dilation=1,
                                data_format="channels_last") -> Tuple[int, ...]:
    """Output shape of :func:`cnnjax.functional.conv_transpose`; kernel ``(*k, C, K)``."""
    return conv_transpose_geometry(input_shape, kernel_shape, strides, padding, dilation, data_format,
                                   fn="conv_transpose_output_shape")[0]


def conv_transpose_geometry(input_shape, kernel_shape, strides=1, padding="valid", dilation=1,
                            data_format="channels_last", fn="conv_transpose"):
    """Checks a transposed convolution's arguments; returns (output shape, strides, dilation, padding, format),
    padding as 'VALID', 'SAME' or one (low, high) pair per spatial axis."""
    kernel_shape = _shape_tuple(kernel_shape, "kernel_shape", fn)
    n = len(kernel_shape) - 2
    if n not in (1, 2, 3):
        raise ValueError(f"{fn}: kernel of shape {kernel_shape} must have rank 3, 4 or 5.")
    _check_kernel_dims(kernel_shape, fn)
    kernel_shape = tuple(int(d) for d in kernel_shape)
    fmt = _args.data_format(data_format, n, fn)
    batch, spatial, channels = _split_shape(input_shape, n, fmt, fn)
    if channels != kernel_shape[-2]:
        raise ValueError(
            f"{fn}: the input has {channels} channels but kernel of shape {kernel_shape} expects "
            f"{kernel_shape[-2]} (axis -2).")
    strides = _args.as_int_tuple(strides, n, "strides", fn)
    dilation = _args.as_int_tuple(dilation, n, "dilation", fn)
    pad = _args.padding(padding, n, fn)
    per_axis = [pad] * n if isinstance(pad, str) else list(pad)
    out = tuple(_transpose_axis(size, k, s, p, d, fn, padding)
                for size, k, s, p, d in zip(spatial, kernel_shape[:-2], strides, per_axis, dilation))
    return _join_shape(batch, out, kernel_shape[-1], fmt), strides, dilation, pad, fmt


def pool_output_size(size: int, pool_size: int, strides: Optional[int] = None, padding="valid",
                     ceil_mode: bool = False) -> int:
    """Output length of one axis of a pooling: ``W2 = (W1 + lo + hi - F) // S + 1``; ``strides=None`` is ``F``.

    ``ceil_mode=True`` (PyTorch) rounds up instead, keeping a last partial window if it starts inside the input
    or its low padding. Explicit padding must be smaller than ``pool_size`` on each side, so that every window
    covers at least one input cell. For a ``jax.export`` symbolic size, ``ceil_mode=True`` raises ValueError
    where whether the last partial window is kept depends on the size's value.
    """
    return _pool_axis(size, pool_size, pool_size if strides is None else strides, padding, ceil_mode,
                      "pool_output_size")[0]


def _pool_axis(size, k, s, padding, ceil_mode, fn, axis=None, given=None, pair=None):
    """(out, lo, hi, extra_hi): extra_hi is the padding that ceil_mode adds past ``hi``.

    Every window covers at least one input cell: each side's padding is smaller than the window (with
    ``hi < k`` the last floor-mode window starts inside the input or the low padding), and ceil_mode's extra
    window is dropped unless it starts inside the input or its low padding, as in PyTorch. ``axis`` and
    ``given`` (the padding as the user gave it) are for the messages; ``pair`` is the (lo, hi) already worked out
    from ``padding`` (symbolic for "same" on a symbolic size).
    """
    size, k, s, _ = _check_axis(size, k, s, 1, fn, kernel_name="pool_size")
    ceil_mode = check_flag(ceil_mode, "ceil_mode", fn)
    lo, hi = _axis_pair(size, k, s, padding, 1, fn) if pair is None else pair
    for side, amount in (("low", lo), ("high", hi)):
        if _args.surely(lambda: amount >= k):
            where = "" if axis is None else f" on spatial axis {axis}"
            raise ValueError(
                f"{fn}: padding {amount}{where} ({side} side) must be smaller than pool_size {k} (a window "
                f"would cover only padding); got padding={padding if given is None else given!r}.")
    padded = size + lo + hi
    if _args.surely(lambda: k > padded):
        raise ValueError(
            f"{fn}: pool_size {k} is larger than the padded input {padded} with padding={padding!r}; "
            f"use padding='same' or a smaller pool_size.")
    if not ceil_mode:
        return (padded - k) // s + 1, lo, hi, 0
    out = -(-(padded - k) // s) + 1
    if _args.has_symbolic((size, lo, hi)):
        # PyTorch's rule drops the last partial window unless it starts inside the input or its low padding:
        # that depends on the symbolic size's value unless jax can decide it.
        drop, keep = (_args.surely(lambda: (out - 1) * s >= size + lo),
                      _args.surely(lambda: (out - 1) * s < size + lo))
        if not (drop or keep):
            raise ValueError(
                f"{fn}: ceil_mode=True needs a concrete input size on each spatial axis, got the symbolic size "
                f"{size}: whether the last partial window is kept depends on its value; use ceil_mode=False or "
                f"export with a concrete spatial size.")
        if drop:
            out -= 1
        return out, lo, hi, _args.dim_max(0, (out - 1) * s + k - padded)
    if (out - 1) * s >= size + lo:
        out -= 1
    return out, lo, hi, max(0, (out - 1) * s + k - padded)


def pool_geometry(input_shape, pool_size, strides=None, padding="valid", data_format="channels_last",
                  ceil_mode=False, fn="pool"):
    """Checks a pooling's arguments; returns (output shape, window, strides, pairs, extra, format)."""
    input_shape = _shape_tuple(input_shape, "input_shape", fn)
    if not isinstance(pool_size, (tuple, list)) and not _args.is_int(pool_size):
        raise TypeError(f"{fn}: pool_size must be an int or a sequence of ints, got {pool_size!r}.")
    spatial_axes = len(input_shape) - 2
    if isinstance(pool_size, (tuple, list)) and spatial_axes in (1, 2, 3) and len(pool_size) != spatial_axes:
        raise ValueError(
            f"{fn}: pool_size={pool_size!r} has {len(pool_size)} entries, but the input of shape {input_shape} has "
            f"{spatial_axes} spatial {'axis' if spatial_axes == 1 else 'axes'}; give one int or {spatial_axes} ints.")
    n = len(pool_size) if isinstance(pool_size, (tuple, list)) else len(input_shape) - 2
    if n not in (1, 2, 3):
        raise ValueError(
            f"{fn}: input of shape {input_shape} has rank {len(input_shape)}; pooling needs rank 3, 4 or 5 "
            f"(batch, 1-3 spatial axes, channels).")
    fmt = _args.data_format(data_format, n, fn)
    batch, spatial, channels = _split_shape(input_shape, n, fmt, fn)
    window = _args.as_int_tuple(pool_size, n, "pool_size", fn)
    strides = window if strides is None else _args.as_int_tuple(strides, n, "strides", fn)
    pad = _args.padding(padding, n, fn)
    per_axis = [pad] * n if isinstance(pad, str) else list(pad)
    pairs = [_axis_pair(size, k, st, p, 1, fn) for size, k, st, p in zip(spatial, window, strides, per_axis)]
    padded = [size + lo + hi for size, (lo, hi) in zip(spatial, pairs)]
    if any(_args.surely(lambda: k > p) for k, p in zip(window, padded)):
        raise ValueError(
            f"{fn}: pool_size {_args.fmt_sizes(window)} is larger than the padded input "
            f"{_args.fmt_sizes(padded)} with padding={padding!r}; use padding='same' or a smaller pool_size.")
    out, extra = [], []
    for axis, (size, k, st, pair) in enumerate(zip(spatial, window, strides, pairs)):
        o, _, _, e = _pool_axis(size, k, st, pair, ceil_mode, fn, axis, padding, pair=pair)
        out.append(o)
        extra.append(e)
    pairs = tuple(pairs)
    return _join_shape(batch, tuple(out), channels, fmt), window, strides, pairs, tuple(extra), fmt


def pool_output_shape(input_shape: Sequence[int], pool_size, strides=None, padding="valid",
                      data_format: str = "channels_last", ceil_mode: bool = False) -> Tuple[int, ...]:
    """Output shape of max/avg/min pooling: spatial axes by :func:`pool_output_size`, channels kept (D2 = D1).

    >>> pool_output_shape((1, 26, 26, 32), 2)
    (1, 13, 13, 32)
    """
    return pool_geometry(input_shape, pool_size, strides, padding, data_format, ceil_mode,
                         fn="pool_output_shape")[0]


def global_pool_output_shape(input_shape, data_format="channels_last", keepdims=False) -> Tuple[int, ...]:
    """(N, *spatial, C) -> (N, C), or (N, 1, ..., 1, C) with keepdims."""
    fn = "global_pool_output_shape"
    input_shape = _shape_tuple(input_shape, "input_shape", fn)
    keepdims = check_flag(keepdims, "keepdims", fn)
    n = len(input_shape) - 2
    if n < 1:
        raise ValueError(f"{fn}: input of shape {input_shape} needs rank >= 3 (batch, spatial..., channels).")
    fmt = _args.data_format(data_format, n, fn)
    batch, spatial, channels = _split_shape(input_shape, n, fmt, fn)
    if not keepdims:
        return batch, channels
    return _join_shape(batch, (1,) * n, channels, fmt)


def channel_pool_output_shape(input_shape, pool_size: int, strides: Optional[int] = None,
                              data_format="channels_last") -> Tuple[int, ...]:
    """Depth-wise pooling over adjacent channels: ``C2 = (C - pool_size) // strides + 1``; spatial kept."""
    return channel_pool_geometry(input_shape, pool_size, strides, data_format, fn="channel_pool_output_shape")[0]


def channel_pool_geometry(input_shape, pool_size, strides=None, data_format="channels_last",
                          fn="channel_max_pool"):
    """Checks a channel pooling's arguments; returns (output shape, pool_size, strides, format)."""
    input_shape = _shape_tuple(input_shape, "input_shape", fn)
    n = len(input_shape) - 2
    if n < 1:
        raise ValueError(f"{fn}: input of shape {input_shape} needs rank >= 3 (batch, spatial..., channels).")
    fmt = _args.data_format(data_format, n, fn)
    k = _int_arg(pool_size, "pool_size", fn)
    s = k if strides is None else _int_arg(strides, "strides", fn)
    batch, spatial, channels = _split_shape(input_shape, n, fmt, fn)
    if _args.surely(lambda: k > channels):
        raise ValueError(f"{fn}: pool_size={k} is larger than the {channels} input channels.")
    if s == k and _args.surely(lambda: channels % k >= 1):
        raise ValueError(
            f"{fn}: {channels} channels are not divisible by pool_size={k}; each output channel is the max of "
            f"{k} adjacent input channels, so use a pool_size that divides {channels}.")
    return _join_shape(batch, spatial, (channels - k) // s + 1, fmt), k, s, fmt


def conv_params(kernel_size, in_channels: int, filters: int, use_bias: bool = True, groups: int = 1) -> int:
    """Parameters of a conv layer: ``prod(kernel_size) * in_channels // groups * filters (+ filters)``.

    >>> conv_params(3, 1, 32, )        # 3*3*1*32 + 32: the lecture's first Conv2D
    320
    >>> conv_params(5, 3, 3)           # K*F*F*D + K = 3*5*5*3 + 3
    228
    """
    fn = "conv_params"
    ksize = _args.as_int_tuple(kernel_size, len(kernel_size) if isinstance(kernel_size, (tuple, list)) else 2,
                               "kernel_size", fn)
    in_channels = _int_arg(in_channels, "in_channels", fn)
    filters = _int_arg(filters, "filters", fn)
    groups = _int_arg(groups, "groups", fn)
    use_bias = check_flag(use_bias, "use_bias", fn)
    if in_channels % groups or filters % groups:
        raise ValueError(f"{fn}: in_channels={in_channels} and filters={filters} must both be divisible by "
                         f"groups={groups}.")
    return math.prod(ksize) * (in_channels // groups) * filters + (filters if use_bias else 0)


def dense_params(in_features: int, units: int, use_bias: bool = True) -> int:
    """Parameters of a dense layer: ``in_features * units + units``.

    >>> dense_params(5408, 128)
    692352
    """
    fn = "dense_params"
    in_features = _int_arg(in_features, "in_features", fn)
    units = _int_arg(units, "units", fn)
    use_bias = check_flag(use_bias, "use_bias", fn)
    return in_features * units + (units if use_bias else 0)
