"""Normalising and checking user arguments (pure Python, no jax).

Every public op and shape formula accepts the same forms of arguments; this module turns them into one canonical
form and raises a ValueError/TypeError that names the function, the argument, the value and what is valid.

Array dimensions may also be ``jax.export`` symbolic sizes (``jax.export.symbolic_shape("b")``): :func:`is_dim`
accepts them, and :func:`surely` decides a comparison only where it holds for every value of the symbols (a
check that cannot be decided for a symbolic size is skipped, not failed). jax is imported lazily, and only once
it is loaded already: without jax there are no symbolic sizes.
"""
from __future__ import annotations

import numbers
import sys
from typing import Sequence, Tuple, Union

Padding = Union[str, int, Sequence[int], Sequence[Tuple[int, int]]]
Pairs = Tuple[Tuple[int, int], ...]

_LAST = "channels_last"
_FIRST = "channels_first"
_FORMAT_ALIASES = {
    "channels_last": _LAST, "channels_first": _FIRST,
    "nwc": _LAST, "nhwc": _LAST, "ndhwc": _LAST,
    "ncw": _FIRST, "nchw": _FIRST, "ncdhw": _FIRST,
}
_RANK_NAMES = {1: ("NWC", "NCW"), 2: ("NHWC", "NCHW"), 3: ("NDHWC", "NCDHW")}


def is_int(value) -> bool:
    """Whether ``value`` is an int: a Python or NumPy integer, not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(value, name: str, fn: str, *, minimum: int = 1) -> int:
    """``value`` as a Python int where it is an int (Python or NumPy, not a bool) ``>= minimum``; the one check of
    an int argument's range. TypeError for anything else than an int, ValueError for a smaller one, both saying
    ``"{fn}: {name} must be an int >= {minimum}, got {value!r}."``"""
    if not is_int(value):
        raise TypeError(f"{fn}: {name} must be an int >= {minimum}, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{fn}: {name} must be an int >= {minimum}, got {value!r}.")
    return int(value)


def is_symbolic(value) -> bool:
    """Whether ``value`` is a ``jax.export`` symbolic dimension size (e.g. ``b`` or ``2*b + 1``)."""
    if isinstance(value, (numbers.Number, str, bytes, tuple, list)) or value is None or "jax" not in sys.modules:
        return False
    from jax import export
    return bool(export.is_symbolic_dim(value))


def is_dim(value) -> bool:
    """An array dimension size: an int (Python or NumPy, not a bool) or a ``jax.export`` symbolic size."""
    return is_int(value) or is_symbolic(value)


def as_dim(value):
    """A dimension as a Python int, or the symbolic size itself."""
    return value if is_symbolic(value) else int(value)


def has_symbolic(values) -> bool:
    """Whether any entry of a (nested) tuple/list of dimensions is symbolic."""
    return any(has_symbolic(v) if isinstance(v, (tuple, list)) else is_symbolic(v) for v in values)


def surely(compare) -> bool:
    """``compare()`` (a comparison of dimensions) as a bool where it can be decided; False where it cannot (a
    comparison of ``jax.export`` symbolic sizes that holds for some of their values and not for others). A check
    ``if surely(lambda: k > n): raise ...`` thus raises for every concrete bad value and skips what a symbolic
    size leaves open."""
    try:
        return bool(compare())
    except Exception as err:  # noqa: BLE001 - only jax's InconclusiveDimensionOperation is swallowed
        if "jax" in sys.modules:
            from jax.errors import InconclusiveDimensionOperation
            if isinstance(err, InconclusiveDimensionOperation):
                return False
        raise


def dim_max(a, b):
    """``max(a, b)`` of dimensions; for symbolic sizes ``jax.export``'s symbolic max (often simplified away)."""
    if is_symbolic(a) or is_symbolic(b):
        from jax import core
        return core.max_dim(a, b)
    return max(a, b)


def as_int_tuple(value, n: int, name: str, fn: str, *, minimum: int = 1) -> Tuple[int, ...]:
    """Turns an int or a sequence of ``n`` ints into a tuple of ``n`` ints, each at least ``minimum``."""
    if is_int(value):
        values = (int(value),) * n
    elif isinstance(value, (tuple, list)) and all(is_int(v) for v in value):
        values = tuple(int(v) for v in value)
        if len(values) != n:
            raise ValueError(
                f"{fn}: {name}={value!r} has {len(values)} entries, but the input has {n} spatial "
                f"{'axis' if n == 1 else 'axes'}; give one int or {n} ints.")
    else:
        raise TypeError(f"{fn}: {name} must be an int or a sequence of {n} ints, got {value!r}.")
    for v in values:
        if v < minimum:
            raise ValueError(f"{fn}: {name}={value!r} must be >= {minimum} on every axis.")
    return values


def data_format(value: str, n: int, fn: str) -> str:
    """Returns 'channels_last' or 'channels_first' for any accepted spelling, checked against ``n`` spatial axes."""
    if not isinstance(value, str):
        raise TypeError(f"{fn}: data_format must be a string, got {value!r}.")
    key = value.lower()
    if key not in _FORMAT_ALIASES:
        last, first = _RANK_NAMES.get(n, ("NHWC", "NCHW"))
        raise ValueError(
            f"{fn}: unknown data_format={value!r}; use 'channels_last' ({last}) or 'channels_first' ({first}).")
    if key not in ("channels_last", "channels_first") and len(key) != n + 2:
        last, first = _RANK_NAMES.get(n, ("NHWC", "NCHW"))
        raise ValueError(
            f"{fn}: data_format={value!r} is for {len(key) - 2}-D inputs, but this input has {n} spatial "
            f"axes; use {last!r}, {first!r}, 'channels_last' or 'channels_first'.")
    return _FORMAT_ALIASES[key]


def layout_names(fmt: str, n: int) -> Tuple[str, str]:
    """(input/output layout, kernel layout) strings for lax, e.g. ('NHWC', 'HWIO')."""
    last, first = _RANK_NAMES[n]
    lhs = last if fmt == _LAST else first
    return lhs, last[1:-1] + "IO"


def channel_axis(fmt: str, ndim: int) -> int:
    return ndim - 1 if fmt == _LAST else 1


def spatial_axes(fmt: str, ndim: int) -> Tuple[int, ...]:
    return tuple(range(1, ndim - 1)) if fmt == _LAST else tuple(range(2, ndim))


def padding(value: Padding, n: int, fn: str) -> Union[str, Pairs]:
    """Returns 'VALID', 'SAME' or a tuple of ``n`` (low, high) pairs of non-negative ints.

    Accepted: 'valid'/'same' in any case; an int (same on every side of every axis); a sequence of ``n`` ints
    (one per axis, both sides); a sequence of ``n`` (low, high) pairs.
    """
    if isinstance(value, str):
        key = value.upper()
        if key not in ("VALID", "SAME"):
            raise ValueError(
                f"{fn}: unknown padding={value!r}; use 'valid', 'same', an int, one int per spatial axis, "
                f"or one (low, high) pair per spatial axis.")
        return key
    if is_int(value):
        pairs = ((int(value), int(value)),) * n
    elif isinstance(value, (tuple, list)) and len(value) == n and all(is_int(v) for v in value):
        pairs = tuple((int(v), int(v)) for v in value)
    elif (isinstance(value, (tuple, list)) and len(value) == n
          and all(isinstance(p, (tuple, list)) and len(p) == 2 and all(is_int(v) for v in p) for p in value)):
        pairs = tuple((int(lo), int(hi)) for lo, hi in value)
    else:
        raise ValueError(
            f"{fn}: padding={value!r} is not valid for {n} spatial {'axis' if n == 1 else 'axes'}; use "
            f"'valid', 'same', an int, {n} ints, or {n} (low, high) pairs.")
    if any(v < 0 for pair in pairs for v in pair):
        raise ValueError(f"{fn}: padding={value!r} has a negative amount; padding must be >= 0.")
    return pairs


def fmt_sizes(sizes: Sequence[int]) -> str:
    """(5, 5) -> '5x5' (a symbolic size as jax prints it)."""
    return "x".join(str(as_dim(s)) for s in sizes)
