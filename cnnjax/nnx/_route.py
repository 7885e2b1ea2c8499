"""The hook through which :func:`cnnjax.nnx.adapter.as_linen` sees each layer call of an NNX model.

A layer's ``__call__`` decorated with :func:`routed` runs as written, unless a router is active in this thread (the
linen view of the model is running): then the router gets the call and runs it inside a linen submodule of its
own, so that linen's tools (``init``/``apply``'s variables, ``intercept_methods``, ``capture_intermediates``)
see one module per layer. Nothing here imports linen.
"""
from __future__ import annotations

import functools
import threading
from typing import Any, Callable, Optional

_STATE = threading.local()


def current() -> Optional[Any]:
    """The router active in this thread, or None."""
    return getattr(_STATE, "router", None)


class active:
    """``with active(router):`` makes ``router`` the active router (the previous one comes back at the end)."""

    def __init__(self, router: Any):
        self.router = router

    def __enter__(self):
        self.previous = current()
        _STATE.router = self.router
        return self.router

    def __exit__(self, *exc):
        _STATE.router = self.previous
        return False


def routed(fn: Callable) -> Callable:
    """Decorates a layer's ``__call__``: ``router.call(layer, fn, args, kwargs)`` while a router is active, else
    ``fn(layer, *args, **kwargs)``. The signature is kept (``inspect.signature`` follows ``__wrapped__``)."""
    @functools.wraps(fn)
    def call(self, *args, **kwargs):
        router = current()
        if router is None:
            return fn(self, *args, **kwargs)
        return router.call(self, fn, args, kwargs)

    call.cnnjax_routed = True
    return call


def is_routed(module: Any) -> bool:
    """Whether ``module``'s class has a :func:`routed` ``__call__``."""
    return bool(getattr(type(module).__call__, "cnnjax_routed", False))


def dropout_key(layer: str) -> Optional[Any]:
    """The dropout key the active router gives the layer running now (None without a router)."""
    router = current()
    return None if router is None else router.dropout_key(layer)
