"""cnnjax: convolutional neural networks in JAX, explained shape by shape.

Layers of the package, each importing only those before it:
``shapes`` (plain-Python formulas) → ``functional`` (pure jax ops) → ``layers`` (Flax linen wrappers) →
``models`` → ``data`` / ``train`` → command line and experiments.
"""
from cnnjax import shapes
from cnnjax import functional
from cnnjax import layers
from cnnjax.layers import *  # noqa: F401,F403  (Conv2D, MaxPooling2D, Dense, Sequential, ...: see layers.__all__)
from cnnjax import models
from cnnjax.params import count_params
from cnnjax.summary import summary
from cnnjax.artifact import export, load_export

__version__ = "0.1.0"

__all__ = ["shapes", "functional", "__version__"]
__all__ += ["layers", "models", "summary", "count_params", *layers.__all__]
__all__ += ["export", "load_export"]
