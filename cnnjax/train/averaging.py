"""Weight averaging as Optax transforms, usable with any optimizer and model through `fit`.

Both wrap the inner optimizer's updates; ``params`` must be passed to ``update`` (as `fit`'s steps do).

- :func:`ema`: keeps, in its state, the exponential moving average of the parameters after each step,
  ``avg_t = decay * avg_{t-1} + (1 - decay) * p_t`` with ``avg_0 = p_0``; the parameters themselves train as
  without it. :func:`averaged_params` reads the average out of an optimizer state.
- :func:`lookahead`: Zhang et al. 2019. The inner optimizer moves "fast" weights; every ``every`` steps the
  "slow" weights move ``slow += alpha * (fast - slow)`` and the fast weights are reset to them. Between those
  steps the parameters are the fast weights. ``alpha`` may also be a schedule, ``alpha(t)`` of the number ``t``
  of updates so far (this one included, ``t = every, 2 * every, ...`` where it is used): e.g. the speedrun's
  ``alpha(t) = 1 - d * (t / T) ** 3`` (:func:`cubic_lookahead_alpha`), which copies the fast weights early on and
  averages only towards the end of training. :func:`lookahead_state` finds its state (the slow weights) in an
  optimizer state.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from cnnjax._args import check_int

__all__ = ["ema", "lookahead", "averaged_params", "EmaState", "LookaheadState", "cubic_lookahead_alpha",
           "lookahead_state"]


class EmaState(NamedTuple):
    inner: Any
    average: Any


class LookaheadState(NamedTuple):
    inner: Any
    slow: Any
    count: jax.Array


def _check_fraction(fn: str, name: str, value, *, closed_top: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            0.0 < value <= 1.0 if closed_top else 0.0 <= value < 1.0):
        interval = "(0, 1]" if closed_top else "[0, 1)"
        raise ValueError(f"{fn}: {name} must be a number in {interval}, got {value!r}.")
    return float(value)


def ema(inner: optax.GradientTransformation, decay: float) -> optax.GradientTransformation:
    """`inner` that also keeps the exponential moving average of the parameters (module docstring)."""
    decay = _check_fraction("ema", "decay", decay, closed_top=False)

    def init(params):
        # copies: the average must not share buffers with the parameters (steps donate both)
        return EmaState(inner.init(params), jax.tree.map(lambda p: jnp.array(p, copy=True), params))

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("ema: update needs params (optax.apply_updates of the same step).")
        updates, inner_state = inner.update(updates, state.inner, params)
        new_params = optax.apply_updates(params, updates)
        average = jax.tree.map(lambda a, p: (decay * a + (1.0 - decay) * p).astype(a.dtype), state.average,
                               new_params)
        return updates, EmaState(inner_state, average)

    return optax.GradientTransformation(init, update)


def lookahead(inner: optax.GradientTransformation, every: int, alpha) -> optax.GradientTransformation:
    """`inner` as the fast optimizer of Lookahead (module docstring): every `every` steps the slow weights move
    by `alpha` (a number in (0, 1], or a function of the update count returning one) towards the fast ones and
    the parameters become the slow weights."""
    every = check_int(every, "every", "lookahead")
    schedule = alpha if callable(alpha) else None
    if schedule is None:
        alpha = _check_fraction("lookahead", "alpha", alpha, closed_top=True)

    def init(params):
        slow = jax.tree.map(lambda p: jnp.array(p, copy=True), params)    # not the parameters' buffers
        return LookaheadState(inner.init(params), slow, jnp.zeros((), jnp.int32))

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("lookahead: update needs params (optax.apply_updates of the same step).")
        updates, inner_state = inner.update(updates, state.inner, params)
        fast = optax.apply_updates(params, updates)
        count = state.count + 1
        sync = count % every == 0
        a = alpha if schedule is None else jnp.asarray(schedule(count), jnp.float32)
        slow = jax.tree.map(lambda s, f: jnp.where(sync, s + a * (f - s), s).astype(s.dtype), state.slow, fast)
        target = jax.tree.map(lambda s, f: jnp.where(sync, s, f), slow, fast)
        updates = jax.tree.map(lambda t, p: (t - p).astype(p.dtype), target, params)
        return updates, LookaheadState(inner_state, slow, count)

    return optax.GradientTransformation(init, update)


def cubic_lookahead_alpha(total_steps: int, decay: float = 0.95 ** 5):
    """The speedrun's lookahead schedule: ``alpha(t) = 1 - decay * (t / total_steps) ** 3``, so that the slow
    weights become ``d * slow + (1 - d) * fast`` with ``d = decay * (t / T) ** 3`` growing from 0 (a copy of the
    fast weights) to ``decay`` at the last step (an average of the last few hundred steps)."""
    total_steps = check_int(total_steps, "total_steps", "cubic_lookahead_alpha")
    decay = _check_fraction("cubic_lookahead_alpha", "decay", decay, closed_top=False)

    def alpha(count):
        return 1.0 - decay * (jnp.asarray(count, jnp.float32) / total_steps) ** 3

    return alpha


def _first_state(opt_state, kind):
    """The first node of type `kind` in `opt_state` (depth first through tuples and lists), or None."""
    if isinstance(opt_state, kind):
        return opt_state
    if isinstance(opt_state, (tuple, list)):
        for child in opt_state:
            found = _first_state(child, kind)
            if found is not None:
                return found
    return None


def lookahead_state(opt_state):
    """The :class:`LookaheadState` of a :func:`lookahead` at the top of `opt_state` or anywhere inside it, or
    None."""
    return _first_state(opt_state, LookaheadState)


def averaged_params(opt_state):
    """The moving average of the parameters kept by an :func:`ema` anywhere in `opt_state`, or None."""
    state = _first_state(opt_state, EmaState)
    return None if state is None else state.average
