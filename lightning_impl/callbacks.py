"""The callbacks that replace plain_pytorch's hand-written early stopping, checkpoints, LR logging and progress bar."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm

from shared.config import BAR_REFRESH_STEPS, TrainConfig


def make_callbacks(cfg: TrainConfig) -> list[L.Callback]:
    """Early stopping, best-k + last checkpoints, LR logging and a progress bar; each only where cfg.uses it."""
    callbacks: list[L.Callback] = []
    if cfg.uses("early_stopping"):
        callbacks.append(EarlyStopping(monitor=cfg.monitor, mode=cfg.monitor_mode, patience=cfg.patience,
                                       min_delta=cfg.min_delta))
    if cfg.uses("checkpoints"):
        # enable_version_counter=False: a rerun in the same folder rewrites its files (as the
        # plain side does) instead of writing last-v1.ckpt beside a stale last.ckpt
        callbacks.append(ModelCheckpoint(dirpath=cfg.checkpoint_dir, monitor=cfg.monitor, mode=cfg.monitor_mode,
                                         save_top_k=cfg.save_top_k, auto_insert_metric_name=False,
                                         filename=f"epoch={{epoch}}-{cfg.monitor}={{{cfg.monitor}:.4f}}",
                                         enable_version_counter=False))
        # last.ckpt = every epoch's end: save_last=True rewrites it only on epochs that enter the
        # top k (Lightning 2.6), so --resume last would re-train the epochs after the best one.
        # Listed second: trainer.checkpoint_callback (the best one, for the test) is the first one,
        # and this file then holds its state updated for the epoch
        callbacks.append(ModelCheckpoint(dirpath=cfg.checkpoint_dir, filename="last", monitor=None,
                                         save_top_k=1, enable_version_counter=False))
    if cfg.uses("tensorboard"):  # it writes to the logger: part of the TensorBoard feature, as on the plain side
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))  # one "lr-Adam" point per epoch
    if cfg.uses("progress_bar"):  # leave=True: one line per epoch, its postfix = the epoch's metrics
        callbacks.append(TQDMProgressBar(leave=True) if cfg.lightning_defaults else StepLossBar(leave=True))
    return callbacks


class StepLossBar(TQDMProgressBar):
    """The plain side's bar: redrawn every BAR_REFRESH_STEPS steps showing the step loss, no validation/test bar."""

    def __init__(self, leave: bool) -> None:
        super().__init__(refresh_rate=BAR_REFRESH_STEPS, leave=leave)
        self._loss: torch.Tensor | None = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        self._loss = outputs["loss"]
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        items = super().get_metrics(trainer, pl_module)
        if self._loss is not None and trainer.training:  # a host read, only when the bar is redrawn
            items["loss"] = f"{self._loss.item():.4f}"
        return items

    def init_validation_tqdm(self) -> Tqdm:
        return Tqdm(disable=True)

    def init_test_tqdm(self) -> Tqdm:
        return Tqdm(disable=True)
