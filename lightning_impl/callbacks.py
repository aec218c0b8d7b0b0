"""The callbacks that replace plain_pytorch's hand-written early stopping, checkpoints, LR logging and progress bar."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, TQDMProgressBar

from shared.config import TrainConfig


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
    if cfg.uses("progress_bar"):
        callbacks.append(TQDMProgressBar(leave=True))  # leave=True: one line per epoch, its postfix = the epoch's metrics
    return callbacks
