"""The callbacks replacing plain_pytorch's early stopping, checkpoints, LR logging, progress bar."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import (
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
    TQDMProgressBar,
)
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lightning_impl.recorder import RunRecorder
from shared.config import BAR_REFRESH_STEPS, TrainConfig
from shared.runtime import atomic_torch_save, non_finite_loss


def make_callbacks(cfg: TrainConfig) -> list[L.Callback]:
    """Early stopping, best-k + last checkpoints, LR logging, a bar; each where cfg.uses it."""
    callbacks: list[L.Callback] = []
    if cfg.uses("early_stopping"):
        callbacks.append(EarlyStopping(monitor=cfg.monitor, mode=cfg.monitor_mode,
                                       patience=cfg.patience, min_delta=cfg.min_delta))
    if cfg.uses("checkpoints"):
        # enable_version_counter=False: a rerun in the same folder rewrites its files (as the
        # plain side does) instead of writing last-v1.ckpt beside a stale last.ckpt
        callbacks.append(FolderCheckpoint(dirpath=cfg.checkpoint_dir, monitor=cfg.monitor,
                                         mode=cfg.monitor_mode, save_top_k=cfg.save_top_k,
                                         auto_insert_metric_name=False,
                                         filename=(f"epoch={{epoch}}-{cfg.monitor}="
                                                   f"{{{cfg.monitor}:.4f}}"),
                                         enable_version_counter=False))
        # last.ckpt = every epoch's end: save_last=True rewrites it only on epochs that enter the
        # top k (Lightning 2.6), so --resume last would re-train the epochs after the best one.
        # Listed second: trainer.checkpoint_callback (the best one, for the test) is the first one,
        # and this file then holds its state updated for the epoch
        callbacks.append(FolderCheckpoint(dirpath=cfg.checkpoint_dir, filename="last", monitor=None,
                                         save_top_k=1, enable_version_counter=False))
    if cfg.uses("tensorboard"):  # it writes to the logger: part of the TensorBoard feature
        # one "lr-Adam" point per epoch
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    if cfg.uses("progress_bar"):  # leave=True: one line per epoch, its postfix the epoch's metrics
        callbacks.append(TQDMProgressBar(leave=True) if cfg.lightning_defaults
                         else StepLossBar(leave=True))
    return callbacks


class FolderCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose resume ranks only the files in its own folder, as the plain saver
    does: a run continued in a copied folder keeps (and prunes) the copies, one continued in a new
    folder starts a fresh top k, and the test never reads another folder's file (Lightning would
    keep best_model_path pointing there, and drop the top k of a folder that moved)."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        def here(path: str | None) -> str:
            return str(Path(self.dirpath) / Path(path).name) if path else ""

        kept = {here(p): score for p, score in state_dict.get("best_k_models", {}).items()
                if Path(here(p)).is_file()}
        ranked = sorted(kept, key=kept.get, reverse=self.mode == "max")  # best first
        best, last = here(state_dict["best_model_path"]), here(state_dict.get("last_model_path"))
        if self.monitor is None:  # the last.ckpt writer: its one file is its "best"
            ranked = [best] if Path(best).is_file() else []
        super().load_state_dict({
            **state_dict, "dirpath": self.dirpath, "best_k_models": kept,
            "best_model_path": ranked[0] if ranked else "",
            "best_model_score": kept.get(ranked[0]) if ranked else None,
            "kth_best_model_path": ranked[-1] if kept else "",
            "kth_value": kept[ranked[-1]] if kept else self.kth_value,
            "last_model_path": last if Path(last).is_file() else ""})


class StepLossBar(TQDMProgressBar):
    """The plain side's bar: redrawn every BAR_REFRESH_STEPS steps with the loss; no val/test."""

    def __init__(self, leave: bool) -> None:
        super().__init__(refresh_rate=BAR_REFRESH_STEPS, leave=leave)
        self._loss: torch.Tensor | None = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
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


class RunHistory(L.Callback):
    """Step losses and per-epoch history; stops on a non-finite loss; stateful, for exact resume."""

    def __init__(self, recorder: RunRecorder) -> None:
        self.recorder = recorder
        self.history: list[dict] = []
        self.step_losses: list[float] = []
        self._epoch_losses: list[torch.Tensor] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_losses = []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        self._epoch_losses.append(outputs["loss"].detach())  # stays on the device: no sync here
        if batch_idx + 1 == trainer.num_training_batches:
            self.end_of_training_batches(trainer)

    def end_of_training_batches(self, trainer: L.Trainer) -> None:
        """Fetch the epoch's losses (one sync); stop on a non-finite one, before any save."""
        # This runs before validation, so before EarlyStopping and ModelCheckpoint (both act in
        # on_train_epoch_end, after validation). Lightning alone would not protect the checkpoints:
        # EarlyStopping(check_finite=True) only sees the monitored *validation* value, and in the
        # same hook ModelCheckpoint still saves while it holds fewer than save_top_k files
        # (check_monitor_top_k returns True, _update_best_and_save maps NaN to +-inf), rewriting
        # last.ckpt with NaN weights.
        losses = torch.stack(self._epoch_losses).float().cpu().tolist()
        self.step_losses.extend(losses)
        bad = [i for i, loss in enumerate(losses) if not math.isfinite(loss)]
        if bad:
            checkpoints = trainer.checkpoint_callback
            folder = Path(checkpoints.dirpath) if checkpoints else None
            raise non_finite_loss(trainer.current_epoch, folder, f" (step {bad[0]} of the epoch)")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # runs after validation: callback_metrics holds this epoch's means as self.log reduced them;
        # the module's own means win, as they exist in barebones too, where nothing is logged
        metrics = {**trainer.callback_metrics, **pl_module.epoch_metrics}
        entry = {"epoch": trainer.current_epoch}
        for name in ("train_loss", "train_acc", "val_loss", "val_acc"):
            # None in barebones with --lightning-defaults
            entry[name] = float(metrics[name]) if name in metrics else None
        entry["lr"] = trainer.optimizers[0].param_groups[0]["lr"]
        entry.update(self.recorder.timing)
        self.history.append(entry)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history, "step_losses": self.step_losses}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict["history"])
        self.step_losses = list(state_dict["step_losses"])


class AtomicCheckpointIO(TorchCheckpointIO):
    """ModelCheckpoint's writer through a temp file beside the target and a rename: a kill mid-write
    never truncates last.ckpt (Lightning's own goes through $TMPDIR and, across filesystems, copies
    over the target)."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Lightning: what plain_pytorch's CheckpointSaver does by hand
        atomic_torch_save(checkpoint, path)
