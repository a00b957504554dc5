"""`until = plateau(metric, patience = N, min_delta = d)`: the one stop rule of SFT and GRPO stages.

GRPO watches a reward (higher is better), SFT its loss (lower is better); both stop once the
metric has not beaten its best by more than `min_delta` for `patience` consecutive updates.
"""

from __future__ import annotations


class PlateauTracker:
    """Stop when `metric` has not improved on its best by more than `min_delta` for `patience` updates."""

    def __init__(self, patience: int, min_delta: float, *, higher_is_better: bool = True) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.sign = 1.0 if higher_is_better else -1.0
        self.best: float | None = None
        self.stale = 0

    def update(self, value: float) -> bool:
        """Record one value; True once the plateau says stop."""
        if self.best is None or self.sign * (value - self.best) > self.min_delta:
            self.best, self.stale = value, 0
        else:
            self.stale += 1
        return self.stale >= self.patience
