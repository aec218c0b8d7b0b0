"""The loop a Trainer runs around a LightningModule's steps, written out: device moves, precision, epochs, steps."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from plain_pytorch.checkpoint import CheckpointSaver, checkpoint_state
from plain_pytorch.distributed import World, all_reduce_sum, broadcast_buffers
from plain_pytorch.early_stopping import EarlyStopping
from plain_pytorch.logger import TrainLogger
from plain_pytorch.recorder import RunRecorder
from shared.config import TrainConfig
from shared.data import random_dihedral
from shared.model import tta_log_probs
from shared.results import RunResult
from shared.runtime import epoch_seed, non_finite_loss, seed_everything


def to_device(x: torch.Tensor, y: torch.Tensor, device: torch.device, cfg: TrainConfig,
              augment: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Copy a batch to the device (asynchronously from pinned memory), augment it there, in the model's layout."""
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


def train_one_epoch(net: nn.Module, loader, criterion: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: LRScheduler, device: torch.device, cfg: TrainConfig, logger: TrainLogger,
                    recorder: RunRecorder) -> tuple[torch.Tensor, list, dict]:
    """One pass over this rank's shard: (loss x n, correct, n) sums, every step's loss tensor, and its timings."""
    # Lightning: the fit loop around training_step (train mode, zero_grad, backward, step)
    net.train()
    loss_sum, correct, seen, losses = torch.zeros((), device=device), torch.zeros((), device=device), 0, []
    recorder.on_train_epoch_start()
    for x, y in loader:
        x, y = to_device(x, y, device, cfg, augment=cfg.augment)
        with autocast(device, cfg):
            logits = net(x)
            loss = criterion(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()  # per optimizer step, as Lightning's interval="step"
        losses.append(loss.detach())  # stays on the device: a float() here would be a host sync every step
        # Lightning: self.log(on_epoch=True) accumulates these sums
        loss_sum += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
        logger.step(loss)
        recorder.on_train_batch_end()
    timing = recorder.end_of_training_batches()
    return torch.stack([loss_sum, correct, torch.tensor(float(seen), device=device)]), losses, timing


@torch.no_grad()
def evaluate(net: nn.Module, loader, criterion: nn.Module, device: torch.device, cfg: TrainConfig,
             tta: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss x n, correct, n) sums over a loader, plus its labels and predictions on the CPU (tta: dihedral mean)."""
    # Lightning: the validation and test loops around validation_step/test_step (eval mode, no_grad)
    net.eval()
    loss_sum, labels, preds = torch.zeros((), device=device), [], []
    for x, y in loader:
        x, y = to_device(x, y, device, cfg)
        with autocast(device, cfg):
            logits = tta_log_probs(net, x) if tta else net(x)
            loss = criterion(logits, y)
        loss_sum += loss * len(y)
        labels.append(y)
        preds.append(logits.argmax(1))
    y_true, y_pred = torch.cat(labels), torch.cat(preds)
    sums = torch.stack([loss_sum, (y_true == y_pred).sum().float(), torch.tensor(float(len(y_true)), device=device)])
    return sums, y_true.cpu(), y_pred.cpu()


def means(sums: torch.Tensor) -> tuple[float, float]:
    """Sample-weighted mean loss and accuracy from (loss x n, correct, n), divided in float32 as Lightning does."""
    # Lightning: self.log(..., on_epoch=True, batch_size=len(y), sync_dist=True)
    loss, acc = (sums[:2] / sums[2]).tolist()
    return loss, acc


# Lightning: Trainer.fit (its fit loop, validation loop, callbacks and DDP reductions)
def run_epochs(cfg: TrainConfig, world: World, model: nn.Module, net: nn.Module, loaders: tuple,
               criterion: nn.Module, optimizer: torch.optim.Optimizer, scheduler: LRScheduler,
               stopper: EarlyStopping | None, saver: CheckpointSaver | None, logger: TrainLogger,
               recorder: RunRecorder, result: RunResult, start_epoch: int) -> None:
    """Train, validate, stop early and checkpoint, epoch by epoch, from start_epoch."""
    train_loader, val_loader = loaders
    recorder.on_train_start()
    for epoch in range(start_epoch, cfg.epochs):
        if stopper is not None and stopper.should_stop:  # also when resuming a run that had stopped
            break
        seed_everything(epoch_seed(cfg, epoch))  # dropout and augmentation become a function of (seed, epoch)
        train_loader.sampler.set_epoch(epoch)
        logger.start_epoch(epoch, len(train_loader), optimizer.param_groups[0]["lr"])
        train_sums, losses, timing = train_one_epoch(net, train_loader, criterion, optimizer, scheduler, world.device,
                                                     cfg, logger, recorder)
        train_loss, train_acc = means(check_finite(all_reduce_sum(train_sums, world), epoch, cfg))
        broadcast_buffers(model, world)  # BatchNorm statistics come from each rank's shard: take rank 0's
        # every rank validates the whole (unsharded) set; the reduction makes the numbers bitwise equal
        val_sums = evaluate(net, val_loader, criterion, world.device, cfg)[0]
        val_loss, val_acc = means(all_reduce_sum(val_sums, world))
        entry = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss,
                 "val_acc": val_acc, "lr": optimizer.param_groups[0]["lr"], **timing}
        result.history.append(entry)
        result.step_losses += torch.stack(losses).tolist()
        logger.end_epoch(entry)
        if stopper is not None:
            stopper.step(entry[cfg.monitor])
        if saver is not None:
            saver.save(checkpoint_state(model, optimizer, scheduler, epoch, logger, stopper, result, cfg),
                       epoch, entry[cfg.monitor])
    recorder.on_train_end()


def check_finite(train_sums: torch.Tensor, epoch: int, cfg: TrainConfig) -> torch.Tensor:
    """The reduced epoch sums, or TrainingError before anything is validated or saved."""
    # one non-finite step loss on any rank makes the reduced loss sum non-finite on every rank
    if not torch.isfinite(train_sums).all():
        raise non_finite_loss(epoch, cfg.checkpoint_dir if cfg.uses("checkpoints") else None)
    return train_sums
