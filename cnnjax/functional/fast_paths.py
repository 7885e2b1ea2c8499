"""The switch between cnnjax's XLA:CPU forms of convolution and pooling and their plain ``lax`` forms.

On XLA:CPU, :func:`cnnjax.functional.conv` and the max/min pools take equivalent forms that train faster
(``conv_impl.py``, ``pool_impl.py``; measured in ``experiments/SPEED.md``). Three of them carry a
``jax.custom_vjp`` (the im2col convolution's and the split convolution's kernel gradients, the max/min pool's
gradient), and JAX cannot push
forward-mode derivatives (``jax.jvp``, ``jax.jacfwd``, ``jax.hessian``) through a custom VJP. Because
``lax.platform_dependent`` traces every backend's form, that holds on every backend. Trace such code inside
:func:`plain_lax`::

    with cnnjax.functional.plain_lax():
        tangent_out = jax.jvp(lambda x: model.apply(variables, x), (x,), (t,))[1]

The switch is read when a function is traced (a `jax.jit` cache entry keeps the form it was traced with).
"""
from __future__ import annotations

import contextlib
import threading

__all__ = ["plain_lax", "enabled"]

_STATE = threading.local()


@contextlib.contextmanager
def plain_lax():
    """Within this context every cnnjax conv and pool traces to its plain ``lax`` form, on every backend."""
    before = getattr(_STATE, "plain", False)
    _STATE.plain = True
    try:
        yield
    finally:
        _STATE.plain = before


def enabled() -> bool:
    """Whether the per-backend forms may be used (False inside :func:`plain_lax`)."""
    return not getattr(_STATE, "plain", False)
