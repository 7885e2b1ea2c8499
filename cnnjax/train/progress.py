"""A per-epoch tqdm progress bar showing loss, accuracy and images/s (only on process 0)."""
from __future__ import annotations

import sys

import jax
from tqdm.auto import tqdm


def epoch_bar(*, epoch: int, epochs: int, total: int, initial: int = 0, enabled: bool = True):
    """Bar over the `total` steps of epoch `epoch` (0-based), starting at `initial` after a resume."""
    return tqdm(total=total, initial=initial, desc=f"epoch {epoch + 1}/{epochs}", unit="step",
                disable=not enabled or jax.process_index() != 0, file=sys.stderr, dynamic_ncols=True,
                mininterval=0.5, leave=True)


def postfix(loss: float, accuracy: float, images_per_s: float, **extra: float) -> dict[str, str]:
    out = {"loss": f"{loss:.4f}", "acc": f"{accuracy:.4f}", "img/s": f"{images_per_s:,.0f}"}
    out.update({k: f"{v:.4f}" for k, v in extra.items()})
    return out
