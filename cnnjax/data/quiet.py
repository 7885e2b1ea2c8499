"""What the data paths print: one line per preparation step, progress bars only on a terminal, and TensorFlow /
tensorflow-datasets kept quiet unless asked.

- `say(message)` prints one line to stderr (e.g. "preparing MNIST from DIR once"), flushed at once.
- `bar_disabled(progress)` is the `disable=` argument for tqdm: True when `progress` is False, else None, which
  tqdm reads as "disabled where stderr is not a terminal" (so a log file gets no carriage returns or escape codes).
- `import_tfds()` imports tensorflow and tensorflow_datasets quietly: unless `$CNNJAX_VERBOSE` is set to a
  non-empty value other than "0", it sets `TF_CPP_MIN_LOG_LEVEL=2` (when unset), sends file descriptor 2 to
  /dev/null while the two packages load (TensorFlow prints its start-up lines there before its log settings
  apply), sets the "tensorflow" and absl loggers to ERROR and turns tfds' progress bars off. An ImportError
  names the missing package and the extra that installs it.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys

ENV_VERBOSE = "CNNJAX_VERBOSE"
TF_EXTRA = "pip install 'cnnjax[tf]'"


def verbose() -> bool:
    """Whether `$CNNJAX_VERBOSE` asks for TensorFlow's and tfds' own output (set, non-empty and not "0")."""
    return os.environ.get(ENV_VERBOSE, "") not in ("", "0")


def say(message: str) -> None:
    """Print `message` as one line on stderr, flushed."""
    print(message, file=sys.stderr, flush=True)


def bar_disabled(progress: bool) -> bool | None:
    """tqdm's `disable=`: True without `progress`, else None (tqdm then shows a bar only on a terminal)."""
    return True if not progress else None


@contextlib.contextmanager
def _stderr_silenced():
    """File descriptor 2 points at /dev/null inside the block (C++ start-up lines bypass Python's sys.stderr)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2: nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tfds():
    """Import and return `tensorflow_datasets` with TensorFlow loaded, quietly (see the module docstring).

    Raises ImportError naming `cnnjax[tf]` when TensorFlow (or tensorflow-datasets) is not installed.
    """
    loud = verbose()
    if not loud and "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with contextlib.nullcontext() if loud else _stderr_silenced():
            import tensorflow  # noqa: F401 - tfds reads prepared data through TensorFlow
            import tensorflow_datasets as tfds
    except ImportError as err:
        raise ImportError(
            f"reading or preparing a tensorflow-datasets copy needs TensorFlow and tensorflow-datasets, and "
            f"importing them failed ({err}); install them with {TF_EXTRA}, or load from the distribution files "
            f"instead (data_dir=DIR, CLI --data-dir DIR), which needs neither."
        ) from err
    if not loud:
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
        with contextlib.suppress(ImportError):
            from absl import logging as absl_logging

            absl_logging.set_verbosity(absl_logging.ERROR)
        tfds.disable_progress_bar()
    return tfds


__all__ = ["ENV_VERBOSE", "TF_EXTRA", "bar_disabled", "import_tfds", "say", "verbose"]
