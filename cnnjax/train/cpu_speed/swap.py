"""Run a function with its convolutions and max/min pools in their faster XLA:CPU forms.

:func:`with_cpu_forms` ``(fn)`` returns a function equal to ``fn`` (to float rounding) that traces ``fn`` to a
jaxpr and evaluates it, equation by equation, with two kinds of equation replaced:

- ``conv_general_dilated`` by :func:`.conv_forms.conv_im2col_vjp` where :func:`.conv_forms.uses_im2col` says so
  (and the layout is channels-last or channels-first with an ``(*k, C, F)`` kernel), by
  :func:`.conv_forms.conv_split_grad` where :func:`.conv_forms.uses_split_grad` does (batch on axis 0);
- ``reduce_window_max`` / ``reduce_window_min`` over non-overlapping, unpadded windows that fit in the input by
  :func:`.pool_forms.window_extreme`.

Every other equation is bound as it was traced; the bodies of nested ``jit`` calls are evaluated the same way
(other higher-order primitives, e.g. ``scan`` or ``remat``, are bound unchanged, their insides untouched).
The replaced forms carry custom VJPs, so the result supports reverse-mode differentiation (to any order) and
not forward mode: it is meant for the loss that a training step differentiates, and the trainer applies it on a
CPU only. Nothing in :mod:`cnnjax.functional` changes: the model keeps calling the plain ``lax`` ops, and this
rewrite sees only the jaxpr they produce, so it works for any model (cnnjax layers, other Flax modules, plain
``lax`` code).
"""
from __future__ import annotations

import functools

import jax
from jax.extend.core import DropVar, Literal

from . import conv_forms, pool_forms

__all__ = ["with_cpu_forms", "conv_form_of"]

JIT_PRIMITIVES = ("pjit", "jit")     # the name of jax.jit's primitive differs between jax versions


def with_cpu_forms(fn):
    """``fn`` with its convolutions and max/min pools replaced by their XLA:CPU forms (see the module docstring).

    ``fn`` takes positional arguments only, each a pytree of arrays (no keyword arguments, no static Python
    values: close over those), and returns a pytree of arrays (e.g. a loss function with ``has_aux`` outputs);
    the wrapped function has the same positional signature and output structure."""
    @functools.wraps(fn)
    def wrapped(*args):
        leaves, tree = jax.tree.flatten(args)
        closed, out_shape = jax.make_jaxpr(lambda *xs: fn(*jax.tree.unflatten(tree, xs)),
                                           return_shape=True)(*leaves)
        out = _evaluate(closed.jaxpr, closed.consts, leaves)
        return jax.tree.unflatten(jax.tree.structure(out_shape), out)

    return wrapped


def _evaluate(jaxpr, consts, args):
    env = {}

    def read(v):
        return v.val if isinstance(v, Literal) else env[v]

    def write(v, value):
        if not isinstance(v, DropVar):
            env[v] = value

    for v, value in zip(jaxpr.constvars, consts):
        write(v, value)
    for v, value in zip(jaxpr.invars, args):
        write(v, value)
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        outs = _replaced(eqn, invals)
        if outs is None:
            if eqn.primitive.name in JIT_PRIMITIVES:
                inner = eqn.params["jaxpr"]
                outs = _evaluate(inner.jaxpr, inner.consts, invals)
            else:
                params = eqn.primitive.get_bind_params(eqn.params)
                with eqn.ctx.manager:
                    ans = eqn.primitive.bind(*invals, **params)
                outs = ans if eqn.primitive.multiple_results else [ans]
        for v, value in zip(eqn.outvars, outs):
            write(v, value)
    return [read(v) for v in jaxpr.outvars]


def _replaced(eqn, invals):
    """[output] of the equation's XLA:CPU form, or None where it keeps its own."""
    name = eqn.primitive.name
    if name == "conv_general_dilated":
        form = conv_form_of(eqn.params, invals[0].shape, invals[1].shape)
        return None if form is None else [form(*invals)]
    if name in ("reduce_window_max", "reduce_window_min"):
        p = eqn.params
        pads = tuple(tuple(pair) for pair in p["padding"])
        if (any(d != 1 for d in (*p["base_dilation"], *p["window_dilation"]))
                or not pool_forms.applies(p["window_dimensions"], p["window_strides"], pads)
                or not all(isinstance(n, int) and n >= d for n, d in zip(invals[0].shape, p["window_dimensions"]))):
            return None
        return [pool_forms.window_extreme(invals[0], p["window_dimensions"], largest=name == "reduce_window_max")]
    return None


def _layout(spec, n):
    """'last' for (batch, channels, spatial...) indices of a channels-last array, 'first' for channels-first."""
    if tuple(spec) == (0, n + 1, *range(1, n + 1)):
        return "last"
    if tuple(spec) == (0, 1, *range(2, n + 2)):
        return "first"
    return None


def conv_form_of(params: dict, lhs_shape, rhs_shape):
    """The XLA:CPU form ``(x, kernel) -> y`` for a ``conv_general_dilated`` equation with these params and
    operand shapes, or None where it keeps XLA's convolution (a transposed or batch-grouped convolution, a
    requested output dtype, a layout the forms do not take, or a convolution the rules leave alone; the split
    kernel gradient needs a concrete batch size)."""
    dn = params["dimension_numbers"]
    n = len(params["window_strides"])
    if (any(d != 1 for d in params["lhs_dilation"]) or params["batch_group_count"] != 1
            or params.get("preferred_element_type") is not None or tuple(dn.lhs_spec) != tuple(dn.out_spec)):
        return None
    layout = _layout(dn.lhs_spec, n)
    if layout is None:
        return None
    groups = params["feature_group_count"]
    strides, dilation = tuple(params["window_strides"]), tuple(params["rhs_dilation"])
    padding = tuple(tuple(pair) for pair in params["padding"])
    precision = params.get("precision")
    kernel_hwio = tuple(dn.rhs_spec) == (n + 1, n, *range(n))
    kernel_shape = tuple(rhs_shape[a] for a in (*dn.rhs_spec[2:], dn.rhs_spec[1], dn.rhs_spec[0]))
    if kernel_hwio and conv_forms.uses_im2col(kernel_shape, groups):
        return functools.partial(conv_forms.conv_im2col_vjp, strides=strides, padding=padding, dilation=dilation,
                                 channels_last=layout == "last", precision=precision)
    if isinstance(lhs_shape[0], int) and conv_forms.uses_split_grad(kernel_shape, groups, lhs_shape[0]):
        return functools.partial(conv_forms.conv_split_grad, strides=strides, padding=padding, dilation=dilation,
                                 groups=groups, dimension_numbers=dn, precision=precision)
    return None
