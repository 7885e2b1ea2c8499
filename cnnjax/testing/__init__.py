"""Testing helpers for users: a NumPy loop reference (``reference``) and hypothesis strategies (``strategies``).

``strategies`` needs hypothesis (the ``test`` extra) and is imported on first use.
"""
from cnnjax.testing import reference

__all__ = ["reference", "strategies"]


def __getattr__(name):
    if name == "strategies":
        import importlib
        return importlib.import_module("cnnjax.testing.strategies")
    raise AttributeError(f"module 'cnnjax.testing' has no attribute {name!r}")
