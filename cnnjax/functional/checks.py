"""Array checks shared by the functional ops and by the packages above them (``prng_key`` and ``host_number``
in ``cnnjax.data`` and ``cnnjax.train``); they raise, never assert: user input must get a message.

Every check reads static values only (shapes, dtypes, Python and NumPy arguments), never an array's values, so
the ops stay usable under ``jit``/``vmap``.
"""
from __future__ import annotations

import math
from typing import Any
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cnnjax import _args


def floating(x, name: str, fn: str):
    """Returns ``x`` as an array; TypeError unless its dtype is floating (float16/bfloat16/float32/float64)."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"{fn}: {name} has dtype {x.dtype}, but it must be floating (float32, bfloat16, float16, float64); "
            f"convert it first, e.g. {name}.astype(jnp.float32) / 255 for uint8 images.")
    return x


def accumulator(dtype):
    """The dtype to sum ``dtype`` values in: float32 for the low-precision floats (float16, bfloat16, float8s),
    where a sum of values that fit overflows or loses its low digits; ``dtype`` itself otherwise (float32 and
    float64 results stay bit-identical)."""
    dtype = jnp.dtype(dtype)
    if jnp.issubdtype(dtype, jnp.floating) and dtype.itemsize < 4:
        return jnp.dtype(jnp.float32)
    return dtype


def rank(x, expected, name: str, fn: str, what: str):
    if x.ndim not in ((expected,) if isinstance(expected, int) else tuple(expected)):
        raise ValueError(f"{fn}: {name} of shape {tuple(x.shape)} has rank {x.ndim}, but {what}.")


def common_dtype(*arrays):
    """The promoted dtype of floating arrays, e.g. bfloat16 + float32 -> float32."""
    return jnp.result_type(*[a.dtype for a in arrays if a is not None])


def _valid_axes(ndim: int) -> str:
    return f"valid: {-ndim}..{ndim - 1}" if ndim else "it has no axes"


def axes(value, ndim: int, name: str, fn: str):
    """An axis (int) or axes (sequence of ints) of an array of rank ``ndim``, each in ``[-ndim, ndim)`` and none
    repeated; returns them non-negative (an int or a tuple, as given)."""
    single = _args.is_int(value)
    items = (value,) if single else value
    if not single and not (isinstance(items, (tuple, list)) and all(_args.is_int(a) for a in items)):
        raise TypeError(f"{fn}: {name} must be an int or a sequence of ints, got {value!r}.")
    for a in items:
        if not -ndim <= a < ndim:
            which = f"{name}={value!r}" if single else f"{name}={value!r} has axis {a}, which"
            raise ValueError(f"{fn}: {which} is out of range for x of rank {ndim} ({_valid_axes(ndim)}).")
    normal = tuple(int(a) % ndim for a in items)
    repeated = sorted({a for a in normal if normal.count(a) > 1})
    if repeated:
        raise ValueError(f"{fn}: {name}={value!r} names axis {repeated[0]} more than once; give each axis once.")
    return normal[0] if single else normal


def static_number(value, name: str, fn: str):
    """``value`` as a Python float if it is a static number: a Python int/float, a NumPy scalar or a 0-d NumPy
    array (not a bool). None for a jax array or tracer (a value only known on the device or while tracing);
    TypeError for anything else."""
    if isinstance(value, jax.Array):
        return None
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf":
        return float(value)
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        return float(value)
    raise TypeError(f"{fn}: {name} must be a Python or NumPy number, got {type(value).__name__} {value!r}.")


def host_number(value, name: str, fn: str) -> float:
    """``value`` as a Python float where it is a static number (see :func:`static_number`); TypeError naming the
    type for anything else, a jax array included (a value the caller must know before tracing)."""
    try:
        number = static_number(value, name, fn)
    except TypeError:
        number = None
    if number is None:
        raise TypeError(f"{fn}: {name} must be a Python or NumPy number (a static value), got {describe(value)}.")
    return number


def describe(value) -> str:
    """A short description of a value for an error message: 'int 0', 'a jax Array of dtype float32 and shape (2,)'."""
    if isinstance(value, (jax.Array, np.ndarray)):
        kind = ("a traced jax Array" if isinstance(value, jax.core.Tracer) else "a jax Array"
                if isinstance(value, jax.Array) else "a NumPy array")
        return f"{kind} of dtype {value.dtype} and shape {tuple(value.shape)}"
    return f"{type(value).__name__} {value!r}"


def prng_key(value, name: str, fn: str):
    """TypeError unless ``value`` is one PRNG key: a typed key (``jax.random.key``, shape ()) or a raw uint32 key
    (``jax.random.PRNGKey``: shape (2,), or (4,) for the 'rbg' implementations). Reads dtype and shape only."""
    if isinstance(value, (jax.Array, np.ndarray)):
        if jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key) and value.shape == ():
            return value
        if value.dtype == np.uint32 and value.shape in ((2,), (4,)):
            return value
    raise TypeError(
        f"{fn}: {name} must be a key from jax.random.key(...) or jax.random.PRNGKey(...), got {describe(value)}.")


_PRECISION_CANDIDATES = ("default", "high", "highest", "bfloat16", "bfloat16_3x", "tensorfloat32", "float32",
                         "fastest")


def _precision_string(s) -> bool:
    try:
        lax.Precision(s)
    except ValueError:
        return False
    return True


_PRECISION_STRINGS = tuple(s for s in _PRECISION_CANDIDATES if _precision_string(s))
_ALGORITHM_TYPES = tuple(t for t in (getattr(lax, "DotAlgorithm", None), getattr(lax, "DotAlgorithmPreset", None))
                         if t is not None)


def _algorithm_name(s: str) -> bool:
    preset = getattr(lax, "DotAlgorithmPreset", None)
    return preset is not None and s in preset.__members__


def precision(value, fn: str):
    """Returns ``value`` unchanged if ``lax.conv_general_dilated``/``lax.dot_general`` accept it as a precision:
    None, a ``lax.Precision``, one of its strings, a pair of those, a ``lax.DotAlgorithmPreset`` (or its name) or
    a ``lax.DotAlgorithm``; ValueError naming ``fn`` otherwise."""
    one = lambda p: isinstance(p, lax.Precision) or (isinstance(p, str) and p in _PRECISION_STRINGS)  # noqa: E731
    if (value is None or one(value) or isinstance(value, _ALGORITHM_TYPES)
            or (isinstance(value, str) and _algorithm_name(value))
            or (isinstance(value, (tuple, list)) and len(value) == 2 and all(one(p) for p in value))):
        return value
    strings = ", ".join(repr(s) for s in _PRECISION_STRINGS)
    raise ValueError(
        f"{fn}: precision={value!r}; valid: None, {strings}, a jax.lax.Precision, a pair of these (one per "
        f"operand), or a jax.lax.DotAlgorithmPreset (or its name).")


def epsilon(value, fn: str):
    """ValueError unless a static ``value`` (Python/NumPy number) is finite and >= 0; a jax array (traced or
    not) is passed through unread."""
    number = static_number(value, "epsilon", fn)
    if number is not None and not (math.isfinite(number) and number >= 0.0):
        raise ValueError(f"{fn}: epsilon={value!r} must be a finite number >= 0 (e.g. 1e-3, Keras' default).")
    return value


def compute_dtype(value: Any, layer: str) -> Any:
    """``value`` (None, or a floating dtype or its name) as a dtype, else ValueError naming the layer."""
    if value is None:
        return None
    try:
        dtype = jnp.dtype(value)
    except TypeError:
        raise ValueError(f"{layer}: dtype={value!r} is not a dtype; use e.g. 'float32', 'bfloat16' or "
                         "'float16'.") from None
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"{layer}: dtype={value!r} is not a floating-point dtype; use e.g. 'float32', 'bfloat16' "
                         "or 'float16'.")
    return dtype
