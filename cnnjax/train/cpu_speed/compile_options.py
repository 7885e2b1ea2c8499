"""XLA:CPU compile options for cnnjax's training programs: convolutions by XLA's own kernels, not YNNPACK's.

jaxlib's XLA:CPU hands convolutions (above a size) to YNNPACK by default (the library fusion type
``individual_convolution``; the default list is ``reduce, individual_dot, individual_convolution`` in jax
0.10.2). For the convolutions of the zoo's CNNs XLA's own kernels were the faster choice on the CPUs where this
was measured (the figures, per layer and per training step, and the jax versions where it makes no difference,
are in ``experiments/SPEED.md``; ``experiments/bench_cpu_ops.py`` measures them). The other YNNPACK fusions
(reductions, matrix products) stay as they are.

:func:`cpu_compiler_options` is the ``compiler_options`` argument of ``jax.jit`` that does this: the default list
without ``individual_convolution``. A jaxlib whose default differs or whose option names differ is detected, not
assumed: once per process a probe compiles a small program without convolutions (it must compile to the same
program with the option as without) and one with a convolution (the option must take it out of YNNPACK). If
either check fails, the option is not used. Nor is it where ``XLA_FLAGS`` already sets the fusion types (the
user's choice wins) or where ``CNNJAX_XLA_CPU_OPTIONS=0``, read once, at the first CPU compilation. Every
process of a multi-process run makes the same decision where, as usual, they share the jaxlib and environment.

:func:`jit` is ``jax.jit`` with these options added for programs that run on the CPU; ``fit`` and the
benchmarks use it. :func:`pmap` does the same for ``jax.pmap``, which takes no ``compiler_options``:
it compiles ahead of time, once per distinct set of argument shapes and dtypes. In your own loop::

    from cnnjax.train.cpu_speed import compile_options
    step = compile_options.jit(train_step, donate_argnums=0)
    # or: jax.jit(train_step, compiler_options=cnnjax.train.cpu_speed.cpu_compiler_options())   (None: jax's defaults)
"""
from __future__ import annotations

import functools
import os
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["cpu_compiler_options", "reason", "compiler_options_for", "jit", "pmap", "FIELD", "WITHOUT_CONVOLUTIONS"]

FIELD = "xla_cpu_experimental_ynn_fusion_type"
WITHOUT_CONVOLUTIONS = "LIBRARY_FUSION_TYPE_REDUCE,LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"
_YNN = re.compile(r'"kind":"__ynn_fusion"')


def _probe_programs():
    x = jnp.zeros((8, 8, 8, 64), jnp.float32)     # small, and wide enough for jax 0.10.2's YNNPACK to take
    k = jnp.zeros((3, 3, 64, 64), jnp.float32)    # its gradient (a 16-channel one at this size it leaves alone)
    w = jnp.zeros((64 * 64, 32), jnp.float32)

    def plain(x, w):       # a reduction and a matrix product, no convolution
        return jnp.sum(jax.nn.relu(x.reshape(8, -1) @ w), axis=0)

    def conv(x, k):
        dn = ("NHWC", "HWIO", "NHWC")
        return jnp.sum(lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=dn) ** 2)

    return [(plain, (x, w)), (jax.grad(conv, argnums=(0, 1)), (x, k))]


def _compiled_text(fn, args, options):
    return jax.jit(fn).lower(*args).compile(compiler_options=options).as_text()


@functools.lru_cache(maxsize=None)
def _probe() -> tuple[dict | None, str]:
    if os.environ.get("CNNJAX_XLA_CPU_OPTIONS", "1") == "0":
        return None, "CNNJAX_XLA_CPU_OPTIONS=0"
    if FIELD in os.environ.get("XLA_FLAGS", ""):
        return None, f"XLA_FLAGS sets {FIELD}"
    try:
        cpu = jax.local_devices(backend="cpu")   # this process's own: another process's cannot run the probe
    except RuntimeError:
        return None, "no CPU backend"
    if not cpu:
        return None, "no CPU backend"
    options = {FIELD: WITHOUT_CONVOLUTIONS}
    (plain, plain_args), (conv, conv_args) = _probe_programs()
    try:
        with jax.default_device(cpu[0]):
            same = _compiled_text(plain, plain_args, None) == _compiled_text(plain, plain_args, options)
            before = len(_YNN.findall(_compiled_text(conv, conv_args, None)))
            after = len(_YNN.findall(_compiled_text(conv, conv_args, options)))
    except Exception as err:   # an unknown option or enum value: this jaxlib has other names
        why = f"this jaxlib does not take the option ({type(err).__name__}: {str(err)[:200]})"
        warnings.warn(f"cnnjax: XLA:CPU compile options not used: {why}", stacklevel=3)
        return None, why
    if not same:
        return None, "the option changes programs without convolutions here (another default list)"
    if after >= before:
        return None, "this jaxlib does not hand convolutions to YNNPACK; nothing to change"
    return options, "convolutions by XLA's kernels"


def cpu_compiler_options() -> dict | None:
    """The ``compiler_options`` for a CPU program (see the module docstring), or None where they do not apply.

    Decided once per process, at the first call (``CNNJAX_XLA_CPU_OPTIONS`` and ``XLA_FLAGS`` are read then)."""
    options = _probe()[0]
    return dict(options) if options else None


def reason() -> str:
    """Why :func:`cpu_compiler_options` is what it is (for benchmark records and bug reports)."""
    return _probe()[1]


def compiler_options_for(platform: str) -> dict | None:
    """:func:`cpu_compiler_options` for ``platform == "cpu"``, None for any other platform."""
    return cpu_compiler_options() if platform == "cpu" else None


def jit(fn, *, platform: str | None = None, **kwargs):
    """``jax.jit(fn, **kwargs)`` with :func:`compiler_options_for` ``platform`` (default: the default backend's)."""
    options = compiler_options_for(platform or jax.default_backend())
    if options:
        kwargs["compiler_options"] = {**options, **(kwargs.get("compiler_options") or {})}   # the caller's win
    return jax.jit(fn, **kwargs)


def pmap(fn, *, platform: str | None = None, **kwargs):
    """``jax.pmap(fn, **kwargs)`` with :func:`compiler_options_for` ``platform`` (default: the default backend's).

    ``jax.pmap`` has no ``compiler_options`` argument, so where there are options the returned function lowers
    and compiles ``jax.pmap(fn, **kwargs)`` ahead of time with them, once for each distinct structure, shapes and
    dtypes of its (array) arguments (the executables are its ``executables`` attribute). Arguments laid out in a
    way an executable does not take (over the devices in another order) run by ``jax.pmap`` itself, without the
    options. Elsewhere it is ``jax.pmap`` itself.
    """
    if kwargs.get("static_broadcasted_argnums") not in (None, ()):
        raise ValueError(f"compile_options.pmap: static_broadcasted_argnums="
                         f"{kwargs['static_broadcasted_argnums']!r} is not supported (its executables are keyed by "
                         "array arguments only); close over static values instead, or use jax.pmap.")
    mapped = jax.pmap(fn, **kwargs)
    options = compiler_options_for(platform or jax.default_backend())
    if not options:
        return mapped
    compiled = {}

    def key(x):   # what the lowering depends on; a jax.Array's attributes are read directly (0.1 ms for ResNet-20)
        if isinstance(x, jax.Array):
            return x.shape, x.dtype, x.weak_type
        return type(x), np.shape(x), np.asarray(x).dtype

    @functools.wraps(fn)
    def call(*args):
        leaves, treedef = jax.tree.flatten(args)
        k = (treedef, tuple(key(x) for x in leaves))
        if k not in compiled:
            try:
                compiled[k] = mapped.lower(*args).compile(compiler_options=options)
            except Exception:          # e.g. a batch the devices do not divide: jax.pmap's own error
                return mapped(*args)
        # An executable takes arguments laid out as it was compiled for or equivalently (pmap's outputs name their
        # mesh axis otherwise), and ones on a single device or on the host; others (e.g. over the devices in
        # another order) raise a ValueError before any buffer is donated, and run by jax.pmap, without options.
        try:
            return compiled[k](*args)
        except ValueError:
            return mapped(*args)

    call.compiler_options, call.executables = options, compiled
    return call
