"""cnnjax: convolutional neural networks in JAX, explained shape by shape.

Layers of the package, each importing only those before it:
``shapes`` (plain-Python formulas) → ``functional`` (pure jax ops) → ``layers`` (Flax linen wrappers) →
``models`` → ``data`` / ``train`` → command line and experiments.
"""
from cnnjax import shapes
from cnnjax import functional

__version__ = "0.1.0"

__all__ = ["shapes", "functional", "__version__"]
