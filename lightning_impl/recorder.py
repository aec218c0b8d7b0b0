"""Measurement, not training: the timings a RunResult needs, where the plain recorder takes them."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch

from shared.runtime import synchronize


class RunRecorder(L.Callback):
    """Fit and per-epoch training-loop times and the first step's time, as Trainer hooks."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.first_step_unix: float | None = None
        self.fit_seconds = 0.0
        self._fit_start = 0.0
        self._epoch_start = self._epoch_start_cpu = 0.0
        self.timing: dict[str, float] = {}  # the last epoch's, read by RunHistory

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # the training phase starts here, after Lightning's setup (under DDP also after the launch
        # of the other processes and their data building, which torchrun does before plain's clock)
        synchronize(self.device)
        self._fit_start = time.perf_counter()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        synchronize(self.device)
        self.fit_seconds = time.perf_counter() - self._fit_start

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # the plain side starts its clock before its loop asks the loader for a batch; so do we
        synchronize(self.device)
        self._epoch_start, self._epoch_start_cpu = time.perf_counter(), time.process_time()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        if self.first_step_unix is None:
            synchronize(self.device)
            self.first_step_unix = time.time()
        if batch_idx + 1 == trainer.num_training_batches:
            self.timing = self.end_of_training_batches()

    def end_of_training_batches(self) -> dict[str, float]:
        """The epoch's training-loop time, before validation."""
        synchronize(self.device)
        # wall time, and this process's CPU time (all threads): steadier on a shared machine
        return {"train_seconds": time.perf_counter() - self._epoch_start,
                "train_cpu_seconds": time.process_time() - self._epoch_start_cpu}
