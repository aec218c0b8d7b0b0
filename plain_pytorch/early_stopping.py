"""Early stopping by hand, with Lightning's exact rule (what `EarlyStopping(...)` does there)."""

from __future__ import annotations

import math
import operator


# Lightning: EarlyStopping
class EarlyStopping:
    """Stop once the monitored metric has not improved by over min_delta for `patience` epochs."""

    def __init__(self, mode: str, patience: int, min_delta: float = 0.0) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode={mode!r} must be 'min' or 'max'")
        self.patience = patience
        self.is_better = operator.lt if mode == "min" else operator.gt
        # Lightning's sign convention: compare (current - min_delta) with the best, min_delta < 0
        # when minimising
        self.min_delta = -abs(min_delta) if mode == "min" else abs(min_delta)
        self.best_score = math.inf if mode == "min" else -math.inf
        self.wait = 0
        self.should_stop = False

    def step(self, current: float) -> bool:
        """Record one epoch's value of the metric; True once training should stop."""
        if not math.isfinite(current):  # Lightning's check_finite
            self.should_stop = True
        elif self.is_better(current - self.min_delta, self.best_score):
            self.best_score, self.wait = current, 0
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.should_stop = True
        return self.should_stop

    def state_dict(self) -> dict:
        return {"best_score": self.best_score, "wait": self.wait, "should_stop": self.should_stop}

    def load_state_dict(self, state: dict) -> None:
        self.best_score, self.wait = state["best_score"], state["wait"]
        self.should_stop = state["should_stop"]
