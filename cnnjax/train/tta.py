"""Test-time augmentation: the logits of a batch averaged over fixed views of each image.

``tta_logits(apply, x, mode)`` with ``apply(x) -> logits`` (inference mode) and ``x`` an NHWC batch:

* ``None``: ``f(x)``.
* ``"flip"``: ``m(x) = (f(x) + f(mirror(x))) / 2``, ``mirror`` reversing the width axis.
* ``"flip_translate"`` (airbench94's level 2): ``m(x) / 2 + (m(t_-(x)) + m(t_+(x))) / 4``, where ``t_-`` and
  ``t_+`` translate the image by one pixel up-left and down-right (reflect padding: ``t_-(x)[y, x'] =
  E(x)[y - 1, x' - 1]``, ``t_+(x)[y, x'] = E(x)[y + 1, x' + 1]``, ``E`` numpy's ``reflect`` extension).
* ``"translate"``: the same without the mirror views, ``f(x) / 2 + (f(t_-(x)) + f(t_+(x))) / 4`` (for images
  whose mirror image is another class, such as digits).

Each view goes through ``apply`` as its own call (the same batch size as ``x``).
"""
from __future__ import annotations

from typing import Callable

import jax.numpy as jnp

__all__ = ["TTA_MODES", "tta_logits", "views_of"]

TTA_MODES = (None, "flip", "translate", "flip_translate")


def views_of(x, mode):
    """The list of views of the NHWC batch ``x`` that ``mode`` averages over (the plain view first; with a
    mirror, the mirrored views form the second half, in the same order)."""
    if mode not in TTA_MODES:
        raise ValueError(f"tta: mode={mode!r}; valid: None or {', '.join(repr(m) for m in TTA_MODES[1:])}.")
    views = [x]
    if mode in ("translate", "flip_translate"):
        h, w = x.shape[1], x.shape[2]
        padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
        views += [padded[:, 0:h, 0:w], padded[:, 2:h + 2, 2:w + 2]]
    if mode in ("flip", "flip_translate"):
        views += [v[:, :, ::-1, :] for v in views]
    return views


def tta_logits(apply: Callable, x, mode=None):
    """The test-time-augmented logits of ``x`` (module docstring); ``mode=None`` is ``apply(x)``."""
    if mode is None:
        return apply(x)
    logits = [apply(v) for v in views_of(x, mode)]
    if mode in ("flip", "flip_translate"):
        k = len(logits) // 2
        logits = [(a + b) / 2 for a, b in zip(logits[:k], logits[k:])]
    if mode == "flip":
        return logits[0]
    return logits[0] / 2 + (logits[1] + logits[2]) / 4
