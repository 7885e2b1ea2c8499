"""Callbacks of `fit`, Keras style: called once per epoch with the epoch's record, they may stop training.

A callback is any object with ``on_epoch_end(record) -> bool | str | None`` (or a plain function of the record,
`fit`'s ``on_epoch_end``): ``True`` or ``"stop"`` stops training after this epoch; the state trained so far is
returned (and checkpointed, with a checkpoint_dir), nothing is lost. :class:`EarlyStopping` also asks `fit` to
return the weights of its best epoch.
"""
from __future__ import annotations

import math

from cnnjax._args import check_int

__all__ = ["EarlyStopping", "wants_stop"]


def wants_stop(answer) -> bool:
    """Whether a callback's return value asks `fit` to stop: True or "stop" (anything else goes on)."""
    return answer is True or (isinstance(answer, str) and answer.lower() == "stop")


class EarlyStopping:
    """Stop when `monitor` has not improved by more than `min_delta` for `patience` epochs.

    monitor: a key of fit's history ("val_loss", "val_accuracy", "loss", "accuracy"); mode "min" or "max" ("auto":
    max for accuracies, min otherwise). restore_best_weights: `fit` returns the state of the best epoch (the
    checkpoints keep the last one). After a run, `best`, `best_epoch` and `stopped_epoch` say what happened.
    """

    def __init__(self, monitor: str = "val_loss", *, patience: int = 0, min_delta: float = 0.0,
                 mode: str = "auto", restore_best_weights: bool = False):
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"EarlyStopping: monitor must be a history key such as 'val_loss', got {monitor!r}.")
        patience = check_int(patience, "patience", "EarlyStopping", minimum=0)
        if isinstance(min_delta, bool) or not isinstance(min_delta, (int, float)) or not min_delta >= 0:
            raise ValueError(f"EarlyStopping: min_delta must be a number >= 0, got {min_delta!r}.")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'auto', 'min' or 'max', got {mode!r}.")
        if not isinstance(restore_best_weights, bool):
            raise TypeError(f"EarlyStopping: restore_best_weights must be a bool, got {restore_best_weights!r}.")
        self.monitor, self.patience, self.min_delta = monitor, patience, float(min_delta)
        self.mode = ("max" if "acc" in monitor else "min") if mode == "auto" else mode
        self.restore_best_weights = restore_best_weights
        self.best, self.best_epoch, self.stopped_epoch, self._wait = None, None, None, 0

    def improved(self, value: float) -> bool:
        """Whether `value` beats the best so far by more than `min_delta`."""
        if self.best is None:
            return math.isfinite(value)
        return value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta

    def on_epoch_end(self, record: dict) -> bool:
        if self.monitor not in record:
            raise ValueError(f"EarlyStopping: monitor={self.monitor!r} is not in fit's history; its keys here are "
                             f"{', '.join(sorted(record))} (val_* need validation_data or validation_split).")
        value = float(record[self.monitor])
        if self.improved(value):
            self.best, self.best_epoch, self._wait = value, record["epoch"], 0
            return False
        self._wait += 1
        if self._wait > self.patience:
            self.stopped_epoch = record["epoch"]
            return True
        return False
