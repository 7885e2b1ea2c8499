"""Normalising and checking user arguments (pure Python, no jax).

Every public op and shape formula accepts the same forms of arguments; this module turns them into one canonical
form and raises a ValueError/TypeError that names the function, the argument, the value and what is valid.
"""
from __future__ import annotations

import numbers
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


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def as_int_tuple(value, n: int, name: str, fn: str, *, minimum: int = 1) -> Tuple[int, ...]:
    """Turns an int or a sequence of ``n`` ints into a tuple of ``n`` ints, each at least ``minimum``."""
    if _is_int(value):
        values = (int(value),) * n
    elif isinstance(value, (tuple, list)) and all(_is_int(v) for v in value):
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
    if _is_int(value):
        pairs = ((int(value), int(value)),) * n
    elif isinstance(value, (tuple, list)) and len(value) == n and all(_is_int(v) for v in value):
        pairs = tuple((int(v), int(v)) for v in value)
    elif (isinstance(value, (tuple, list)) and len(value) == n
          and all(isinstance(p, (tuple, list)) and len(p) == 2 and all(_is_int(v) for v in p) for p in value)):
        pairs = tuple((int(lo), int(hi)) for lo, hi in value)
    else:
        raise ValueError(
            f"{fn}: padding={value!r} is not valid for {n} spatial {'axis' if n == 1 else 'axes'}; use "
            f"'valid', 'same', an int, {n} ints, or {n} (low, high) pairs.")
    if any(v < 0 for pair in pairs for v in pair):
        raise ValueError(f"{fn}: padding={value!r} has a negative amount; padding must be >= 0.")
    return pairs


def fmt_sizes(sizes: Sequence[int]) -> str:
    """(5, 5) -> '5x5'."""
    return "x".join(str(int(s)) for s in sizes)
