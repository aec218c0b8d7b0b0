"""Measurement, not training: the per-step and per-epoch record a RunResult needs, without per-step host syncs."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from shared.runtime import non_finite_loss, synchronize


class RunRecorder(L.Callback):
    """Step losses, per-epoch history and timings; stateful, so a resumed run's record is complete."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.history: list[dict] = []
        self.step_losses: list[float] = []
        self.first_step_unix: float | None = None
        self.fit_seconds = 0.0
        self._fit_start = 0.0
        self._epoch_losses: list[torch.Tensor] = []
        self._epoch_start = self._epoch_start_cpu = 0.0
        self._timing: dict[str, float] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # the training phase starts here, after Lightning's setup (and, under DDP, after the launch of the
        # other processes and their data building, which torchrun does before the plain side starts timing)
        synchronize(self.device)
        self._fit_start = time.perf_counter()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        synchronize(self.device)
        self.fit_seconds = time.perf_counter() - self._fit_start

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # the plain side starts its clock before its loop asks the loader for the first batch; so do we
        synchronize(self.device)
        self._epoch_start, self._epoch_start_cpu = time.perf_counter(), time.process_time()
        self._epoch_losses = []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._epoch_losses.append(outputs["loss"].detach())  # stays on the device: no sync here
        if self.first_step_unix is None:
            synchronize(self.device)
            self.first_step_unix = time.time()
        if batch_idx + 1 == trainer.num_training_batches:
            self.end_of_training_batches(trainer)

    def end_of_training_batches(self, trainer: L.Trainer) -> None:
        """Time the epoch, fetch its losses (one sync) and stop on a non-finite one, before anything is saved."""
        # This runs before validation, so before EarlyStopping and ModelCheckpoint (both act in
        # on_train_epoch_end, after validation). Lightning alone would not protect the checkpoints:
        # EarlyStopping(check_finite=True) only sees the monitored *validation* value, and in the same hook
        # ModelCheckpoint still saves while it holds fewer than save_top_k files (check_monitor_top_k returns
        # True, _update_best_and_save maps NaN to +-inf), rewriting last.ckpt with NaN weights.
        synchronize(self.device)
        # wall time, and this process's CPU time (all threads): steadier than wall time on a shared machine
        self._timing = {"train_seconds": time.perf_counter() - self._epoch_start,
                        "train_cpu_seconds": time.process_time() - self._epoch_start_cpu}
        losses = torch.stack(self._epoch_losses).float().cpu().tolist()
        self.step_losses.extend(losses)
        bad = [i for i, loss in enumerate(losses) if not math.isfinite(loss)]
        if bad:
            checkpoints = trainer.checkpoint_callback
            raise non_finite_loss(trainer.current_epoch, Path(checkpoints.dirpath) if checkpoints else None,
                                  f" (step {bad[0]} of the epoch)")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # runs after validation: callback_metrics holds this epoch's train and val means
        # the module's own epoch means (also in barebones, where nothing is logged), else what self.log reduced
        metrics = {**trainer.callback_metrics, **pl_module.epoch_metrics}
        entry = {"epoch": trainer.current_epoch}
        for name in ("train_loss", "train_acc", "val_loss", "val_acc"):
            entry[name] = float(metrics[name]) if name in metrics else None  # None in barebones with --lightning-defaults
        entry["lr"] = trainer.optimizers[0].param_groups[0]["lr"]
        entry.update(self._timing)
        self.history.append(entry)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history, "step_losses": self.step_losses}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict["history"])
        self.step_losses = list(state_dict["step_losses"])
