"""Measurement, not training: the timings a RunResult needs, where Lightning's are taken."""

from __future__ import annotations

import time

import torch

from shared.runtime import synchronize


class RunRecorder:
    """Fit and per-epoch training-loop times and the first step's time, in Lightning's hooks."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.first_step_unix: float | None = None
        self.fit_seconds = 0.0
        self._fit_start = 0.0
        self._epoch_start = self._epoch_start_cpu = 0.0

    def on_train_start(self) -> None:
        synchronize(self.device)
        self._fit_start = time.perf_counter()

    def on_train_end(self) -> None:
        # this process's epochs only: a resumed run does not count the time before the interruption
        synchronize(self.device)
        self.fit_seconds = time.perf_counter() - self._fit_start

    def on_train_epoch_start(self) -> None:
        synchronize(self.device)
        self._epoch_start, self._epoch_start_cpu = time.perf_counter(), time.process_time()

    def on_train_batch_end(self) -> None:
        if self.first_step_unix is None:
            synchronize(self.device)
            self.first_step_unix = time.time()

    def end_of_training_batches(self) -> dict[str, float]:
        """The epoch's training-loop time, before validation."""
        synchronize(self.device)
        # wall time, and this process's CPU time (all threads): steadier on a shared machine
        return {"train_seconds": time.perf_counter() - self._epoch_start,
                "train_cpu_seconds": time.process_time() - self._epoch_start_cpu}
