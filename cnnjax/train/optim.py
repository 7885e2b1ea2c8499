"""Optimizers and learning-rate schedules by name (what the command line offers).

`make_optimizer` returns a plain `optax.GradientTransformation`; anything `fit` accepts can also be any Optax
optimizer the user builds. Schedules give the learning rate at optimizer step t (t = 0, 1, ...):

- ``constant``:  lr(t) = lr
- ``cosine``:    lr(t) = lr * (1 + cos(pi * min(t, T) / T)) / 2,             T = total_steps
- ``warmup_cosine``: linear 0 -> lr over `warmup_steps`, then cosine from lr to 0 over the rest
- ``one_cycle``: optax.cosine_onecycle_schedule(T, lr) (rise to lr over 30% of T, anneal to lr / 1e4)

``warmup_steps > 0`` with ``constant`` gives a linear warm-up from 0 to lr, then lr.
Weight decay: ``adamw`` uses decoupled decay (update -= lr * wd * param); for ``sgd`` and ``adam`` a non-zero
`weight_decay` adds wd * param to the gradient (classic L2) before the momentum / moment estimates.
"""
from __future__ import annotations

import math

import numpy as np
import optax

from cnnjax.functional.checks import host_number

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "warmup_cosine", "one_cycle")


def check_number(fn, name, value) -> float:
    """`value` as a float where it is a real number (a Python or NumPy scalar, not a bool), else TypeError naming
    `fn`, `name` and the type: a string, a bool or a jax array is a caller's mistake, not a number to round."""
    return host_number(value, name, fn)


def _check_positive(fn, name, value, *, allow_zero=False):
    value = check_number(fn, name, value)
    if not (math.isfinite(value) and (value >= 0 if allow_zero else value > 0)):
        rule = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{fn}: {name} must be a finite number {rule}, got {value!r}.")


def make_schedule(name: str, learning_rate: float, *, total_steps: int | None = None,
                  warmup_steps: int = 0) -> optax.Schedule:
    """Learning-rate schedule `name` (one of SCHEDULES) peaking at `learning_rate`; see the module docstring."""
    _check_positive("make_schedule", "learning_rate", learning_rate)
    if name not in SCHEDULES:
        raise ValueError(f"make_schedule: unknown schedule {name!r}; valid names: {', '.join(SCHEDULES)}.")
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, (int, np.integer)) or warmup_steps < 0:
        raise ValueError(f"make_schedule: warmup_steps must be an int >= 0, got {warmup_steps!r}.")
    if name != "constant" and (isinstance(total_steps, bool) or not isinstance(total_steps, (int, np.integer))
                               or total_steps <= warmup_steps):
        raise ValueError(f"make_schedule: schedule {name!r} needs total_steps > warmup_steps "
                         f"(got total_steps={total_steps!r}, warmup_steps={warmup_steps}).")
    if name == "constant":
        if warmup_steps:
            return optax.join_schedules([optax.linear_schedule(0.0, learning_rate, warmup_steps),
                                         optax.constant_schedule(learning_rate)], [warmup_steps])
        return optax.constant_schedule(learning_rate)
    if name == "cosine":
        if warmup_steps:
            return optax.warmup_cosine_decay_schedule(0.0, learning_rate, warmup_steps, total_steps)
        return optax.cosine_decay_schedule(learning_rate, total_steps)
    if name == "warmup_cosine":
        warm = warmup_steps or max(1, total_steps // 20)
        return optax.warmup_cosine_decay_schedule(0.0, learning_rate, warm, total_steps)
    return optax.cosine_onecycle_schedule(total_steps, learning_rate)


def make_optimizer(name: str = "adam", learning_rate: float = 1e-3, *, momentum: float = 0.9,
                   nesterov: bool = False, weight_decay: float = 0.0, schedule: str = "constant",
                   total_steps: int | None = None, warmup_steps: int = 0) -> optax.GradientTransformation:
    """Optax optimizer by name: 'sgd' (with `momentum`, `nesterov`), 'adam' or 'adamw'.

    `learning_rate` is the peak of `schedule` (see module docstring). Examples:
    ``make_optimizer("adam", 1e-3)``; ``make_optimizer("sgd", 0.1, nesterov=True, weight_decay=5e-4,
    schedule="one_cycle", total_steps=1000)``.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"make_optimizer: unknown optimizer {name!r}; valid names: {', '.join(OPTIMIZERS)}.")
    _check_positive("make_optimizer", "learning_rate", learning_rate)
    _check_positive("make_optimizer", "weight_decay", weight_decay, allow_zero=True)
    if not (0.0 <= check_number("make_optimizer", "momentum", momentum) < 1.0):
        raise ValueError(f"make_optimizer: momentum must be in [0, 1), got {momentum!r}.")
    lr = make_schedule(schedule, learning_rate, total_steps=total_steps, warmup_steps=warmup_steps)
    if name == "adamw":
        return optax.adamw(lr, weight_decay=weight_decay)
    if name == "adam":
        base = optax.adam(lr)
    else:
        base = optax.sgd(lr, momentum=momentum or None, nesterov=nesterov)
    if weight_decay:
        return optax.chain(optax.add_decayed_weights(weight_decay), base)
    return base
