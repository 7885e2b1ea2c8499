"""Per-epoch progress (only on process 0): a live tqdm bar with loss, accuracy and images/s on a terminal; where
stderr is not a terminal (a log file, CI), one plain line per epoch with the epoch's final figures instead, so a
log holds no carriage returns or escape codes."""
from __future__ import annotations

import sys

import jax
from tqdm.auto import tqdm


class _EpochLine:
    """The bar's interface, printing one line at `close()`: ``epoch 1/2: 468/468 steps, loss=..., acc=...``."""

    def __init__(self, *, desc: str, total: int, initial: int, file):
        self.desc, self.total, self.n, self.file, self.postfix = desc, total, initial, file, {}

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, values: dict, refresh: bool = True) -> None:
        self.postfix = dict(values)

    def close(self) -> None:
        figures = "".join(f", {k}={v}" for k, v in self.postfix.items())
        print(f"{self.desc}: {self.n}/{self.total} steps{figures}", file=self.file, flush=True)


def epoch_bar(*, epoch: int, epochs: int, total: int, initial: int = 0, enabled: bool = True, file=None):
    """Progress over the `total` steps of epoch `epoch` (0-based), starting at `initial` after a resume: a tqdm
    bar where `file` (default stderr) is a terminal, else an object with the same methods that prints one line
    when closed; nothing when not `enabled` or off process 0."""
    file = sys.stderr if file is None else file
    disabled = not enabled or jax.process_index() != 0
    desc = f"epoch {epoch + 1}/{epochs}"
    if not disabled and not getattr(file, "isatty", lambda: False)():
        return _EpochLine(desc=desc, total=total, initial=initial, file=file)
    return tqdm(total=total, initial=initial, desc=desc, unit="step", disable=disabled, file=file,
                dynamic_ncols=True, mininterval=0.5, leave=True)


def postfix(loss: float, accuracy: float, images_per_s: float, **extra: float) -> dict[str, str]:
    out = {"loss": f"{loss:.4f}", "acc": f"{accuracy:.4f}", "img/s": f"{images_per_s:,.0f}"}
    out.update({k: f"{v:.4f}" for k, v in extra.items()})
    return out
