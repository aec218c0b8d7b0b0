"""The loop a Trainer runs around a LightningModule's hooks, written out: devices, epochs, state."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from plain_pytorch.checkpoint import CheckpointSaver, checkpoint_state
from plain_pytorch.distributed import World, broadcast_buffers
from plain_pytorch.early_stopping import EarlyStopping
from plain_pytorch.logger import TrainLogger
from plain_pytorch.module import (
    epoch_means,
    on_train_epoch_start,
    test_predictions,
    test_step,
    training_step,
    validation_step,
)
from plain_pytorch.recorder import RunRecorder
from shared.config import TrainConfig
from shared.data import random_dihedral
from shared.runtime import non_finite_loss


# Lightning: the LightningModule holds these; the strategy wraps it
@dataclass
class Parts:
    """What the loop drives: the model (bare and as run), its loss, optimizer and schedule."""

    model: nn.Module  # the bare model: checkpoints hold its state_dict
    net: nn.Module  # what runs the batches: the model, or its DDP and/or compiled wrapper
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler


# Lightning: the Trainer's loop state (current_epoch, global_step) and its callbacks' states
@dataclass
class TrainState:
    """What the loop owns and a checkpoint carries: position, run record, early stopping, best k."""

    stopper: EarlyStopping | None = None
    saver: CheckpointSaver | None = None  # rank 0's only: it writes the files
    epoch: int = 0  # the epoch running (after a restore: the next one to run)
    global_step: int = 0  # optimizer steps taken
    history: list[dict] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)

    @property
    def should_stop(self) -> bool:
        return self.stopper is not None and self.stopper.should_stop

    def state_dict(self) -> dict:
        """The checkpoint's loop keys (CheckpointSaver adds its own top-k list)."""
        return {"epoch": self.epoch, "global_step": self.global_step,
                "early_stopping": self.stopper.state_dict() if self.stopper else None,
                "history": self.history,
                "step_losses": torch.tensor(self.step_losses, dtype=torch.float64)}

    def load_state_dict(self, ckpt: dict) -> None:
        """Continue after the checkpoint's epoch, which it holds complete."""
        self.epoch, self.global_step = ckpt["epoch"] + 1, ckpt["global_step"]
        if self.stopper is not None and ckpt["early_stopping"] is not None:
            self.stopper.load_state_dict(ckpt["early_stopping"])
        if self.saver is not None:
            self.saver.load_state_dict(ckpt["checkpoints"])
        self.history, self.step_losses = ckpt["history"], ckpt["step_losses"].tolist()


def to_device(x: torch.Tensor, y: torch.Tensor, device: torch.device, cfg: TrainConfig,
              augment: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Copy a batch to the device (async from pinned memory), augment it there, in model layout."""
    # Lightning: the Trainer's batch transfer + WaferDataModule.on_after_batch_transfer
    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    if augment:
        x = random_dihedral(x)
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y


def autocast(device: torch.device, cfg: TrainConfig) -> torch.autocast:
    """bf16 autocast around forward and loss under bf16-mixed, a no-op context otherwise."""
    # Lightning: Trainer(precision="bf16-mixed")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16-mixed")


def train_one_epoch(parts: Parts, loader, state: TrainState, cfg: TrainConfig, device: torch.device,
                    logger: TrainLogger, recorder: RunRecorder) -> tuple[dict, list, dict]:
    """One pass over this rank's shard: the epoch's sums, every step's loss tensor, its timings."""
    # Lightning: the fit loop around training_step (train mode, zero_grad, backward, step)
    parts.net.train()
    sums, losses = {}, []
    recorder.on_train_epoch_start()
    for x, y in loader:
        batch = to_device(x, y, device, cfg, augment=cfg.augment)
        with autocast(device, cfg):
            loss = training_step(parts.net, parts.criterion, batch, sums)
        parts.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        parts.optimizer.step()
        parts.scheduler.step()  # per optimizer step, as Lightning's interval="step"
        losses.append(loss.detach())  # stays on the device: a float() here would sync every step
        state.global_step += 1
        logger.step(loss, state.global_step)
        recorder.on_train_batch_end()
    return sums, losses, recorder.end_of_training_batches()


@torch.no_grad()
def evaluate(net: nn.Module, loader, step, device: torch.device, cfg: TrainConfig) -> None:
    """step(batch) for every batch of a loader, in eval mode, without gradients."""
    # Lightning: the validation and test loops around validation_step/test_step (eval mode, no_grad)
    net.eval()
    for x, y in loader:
        batch = to_device(x, y, device, cfg)
        with autocast(device, cfg):
            step(batch)


def validate(parts: Parts, loader, device: torch.device, cfg: TrainConfig) -> dict:
    """The validation sums over a loader."""
    sums = {}
    evaluate(parts.net, loader,
             lambda batch: validation_step(parts.net, parts.criterion, batch, sums), device, cfg)
    return sums


def run_test(net: nn.Module, criterion: nn.Module, loader, device: torch.device,
             cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels and predictions over a loader, on the CPU."""
    outputs = []
    evaluate(net, loader, lambda batch: test_step(net, criterion, batch, outputs, cfg.tta), device,
             cfg)
    return test_predictions(outputs)


# Lightning: Trainer.fit (its fit loop, validation loop, callbacks and DDP reductions)
def run_epochs(cfg: TrainConfig, world: World, parts: Parts, loaders: tuple, state: TrainState,
               logger: TrainLogger, recorder: RunRecorder) -> None:
    """Train, validate, stop early and checkpoint, epoch by epoch, from state.epoch."""
    train_loader, val_loader = loaders
    recorder.on_train_start()
    for epoch in range(state.epoch, cfg.epochs):
        if state.should_stop:  # also when resuming a run that had stopped
            break
        state.epoch = epoch
        on_train_epoch_start(cfg, epoch)
        train_loader.sampler.set_epoch(epoch)
        logger.start_epoch(epoch, len(train_loader), parts.optimizer.param_groups[0]["lr"],
                           state.global_step)
        sums, losses, timing = train_one_epoch(parts, train_loader, state, cfg, world.device,
                                               logger, recorder)
        train = check_finite(epoch_means(sums, "train", world), epoch, cfg)
        broadcast_buffers(parts.model, world)  # BatchNorm statistics per shard: take rank 0's
        # every rank validates the whole (unsharded) set; the reduction makes the numbers equal
        val = epoch_means(validate(parts, val_loader, world.device, cfg), "val", world)
        entry = {"epoch": epoch, **train, **val, "lr": parts.optimizer.param_groups[0]["lr"],
                 **timing}
        state.history.append(entry)
        state.step_losses += torch.stack(losses).tolist()
        logger.end_epoch(entry, state.global_step)
        if state.stopper is not None:
            state.stopper.step(entry[cfg.monitor])
        if state.saver is not None:
            state.saver.save(checkpoint_state(parts, state, cfg, world.size), epoch,
                             entry[cfg.monitor])
    recorder.on_train_end()


def check_finite(train: dict[str, float], epoch: int, cfg: TrainConfig) -> dict[str, float]:
    """The epoch's train means, or TrainingError before anything is validated or saved."""
    # one non-finite step loss on any rank makes the reduced loss sum non-finite on every rank
    if not math.isfinite(train["train_loss"]):
        raise non_finite_loss(epoch, cfg.checkpoint_dir if cfg.uses("checkpoints") else None)
    return train
