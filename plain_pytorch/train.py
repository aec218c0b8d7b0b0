"""WaferCNN trained with a hand-written PyTorch loop: devices, precision, early stopping, checkpoints, DDP."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from plain_pytorch.checkpoint import CheckpointSaver, load_checkpoint, resume_path, rng_state, set_rng_state
from plain_pytorch.distributed import World, all_reduce_sum, broadcast_buffers, close_distributed, init_distributed, wrap_model
from plain_pytorch.early_stopping import EarlyStopping
from plain_pytorch.logger import TrainLogger
from shared.cli import run_cli
from shared.config import TrainConfig
from shared.data import WaferSplits, describe, make_dataloaders, random_dihedral, split_dataset
from shared.model import build_model, count_parameters
from shared.outputs import claim_output_dir
from shared.results import RunResult, finish_run, summary_lines
from shared.runtime import apply_torch_settings, epoch_seed, non_finite_loss, replica_digest, seed_everything, state_digest, synchronize
from shared.schedule import make_scheduler


def to_device(x: torch.Tensor, y: torch.Tensor, device: torch.device, cfg: TrainConfig,
              augment: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Copy a batch to the device (asynchronously from pinned memory), augment it there, in the model's layout."""
    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    if augment:
        x = random_dihedral(x)
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y


def autocast(device: torch.device, cfg: TrainConfig) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16-mixed")


def train_one_epoch(net: nn.Module, loader, criterion: nn.Module, optimizer: torch.optim.Optimizer, scheduler,
                    device: torch.device, cfg: TrainConfig, logger: TrainLogger) -> tuple[torch.Tensor, list, dict]:
    """One pass over this rank's shard: (loss x n, correct, n) sums, every step's loss tensor, and its timings."""
    net.train()
    loss_sum, correct, seen, losses = torch.zeros((), device=device), torch.zeros((), device=device), 0, []
    synchronize(device)
    start, start_cpu = time.perf_counter(), time.process_time()
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
        loss_sum += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
        logger.step(loss)
    synchronize(device)
    # wall time, and this process's CPU time (all threads): steadier than wall time on a shared machine
    timing = {"train_seconds": time.perf_counter() - start, "train_cpu_seconds": time.process_time() - start_cpu}
    return torch.stack([loss_sum, correct, torch.tensor(float(seen), device=device)]), losses, timing


@torch.no_grad()
def evaluate(net: nn.Module, loader, criterion: nn.Module, device: torch.device,
             cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss x n, correct, n) sums over a loader, plus its labels and predictions on the CPU."""
    net.eval()
    loss_sum, labels, preds = torch.zeros((), device=device), [], []
    for x, y in loader:
        x, y = to_device(x, y, device, cfg)
        with autocast(device, cfg):
            logits = net(x)
            loss = criterion(logits, y)
        loss_sum += loss * len(y)
        labels.append(y)
        preds.append(logits.argmax(1))
    y_true, y_pred = torch.cat(labels), torch.cat(preds)
    sums = torch.stack([loss_sum, (y_true == y_pred).sum().float(), torch.tensor(float(len(y_true)), device=device)])
    return sums, y_true.cpu(), y_pred.cpu()


def means(sums: torch.Tensor) -> tuple[float, float]:
    """Sample-weighted mean loss and accuracy from (loss x n, correct, n), divided in float32 as Lightning does."""
    loss, acc = (sums[:2] / sums[2]).tolist()
    return loss, acc


def fit(cfg: TrainConfig) -> RunResult:
    """Train with early stopping and checkpoints, then test the best weights (under torchrun: one process per device)."""
    world = init_distributed(cfg)
    try:
        with claim_output_dir(cfg):  # refuses a file, a folder in use or another run's folder, before any work
            return _fit(cfg, world)
    finally:
        close_distributed()


def _fit(cfg: TrainConfig, world: World) -> RunResult:
    """fit's body, run inside the process group (if any) with the output folder claimed."""
    ckpt_path = checked_resume_path(cfg)
    device = world.device
    apply_torch_settings(cfg)
    splits = split_dataset(cfg)
    seed_everything(cfg.seed)
    model = build_model(cfg)
    initial_weights_sha256 = state_digest(model)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model = model.to(device, non_blocking=True)
    criterion = nn.CrossEntropyLoss(weight=splits.class_weights.to(device) if cfg.class_weights else None,
                                    label_smoothing=cfg.label_smoothing)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    train_loader, val_loader, test_loader = make_dataloaders(cfg, splits, world.rank, world.size,
                                                             pin_memory=device.type == "cuda", device=device)
    scheduler = make_scheduler(optimizer, cfg, cfg.epochs * len(train_loader))
    result = RunResult("plain_pytorch", cfg.to_dict(), str(device), world.size, count_parameters(model),
                       steps_per_epoch=len(train_loader), initial_weights_sha256=initial_weights_sha256,
                       data_skipped=splits.skipped)
    stopper, saver = make_stopper_and_saver(cfg, world)
    start_epoch = restore(ckpt_path, model, optimizer, scheduler, stopper, saver, result) if ckpt_path else 0
    net = wrap_model(model, cfg, world)
    if world.is_main:
        print_banner(cfg, splits, result, start_epoch)
    logger = TrainLogger(cfg, device, world.is_main, global_step=len(result.step_losses))
    fit_start = time.perf_counter()
    try:
        for epoch in range(start_epoch, cfg.epochs):
            if stopper is not None and stopper.should_stop:  # also when resuming a run that had stopped
                break
            seed_everything(epoch_seed(cfg, epoch))  # dropout and augmentation become a function of (seed, epoch)
            train_loader.sampler.set_epoch(epoch)
            logger.start_epoch(epoch, len(train_loader), optimizer.param_groups[0]["lr"])
            train_sums, losses, timing = train_one_epoch(net, train_loader, criterion, optimizer, scheduler, device, cfg,
                                                     logger)
            train_loss, train_acc = means(check_finite(all_reduce_sum(train_sums, world), epoch, cfg))
            broadcast_buffers(model, world)  # BatchNorm statistics come from each rank's shard: take rank 0's
            # every rank validates the whole (unsharded) set; the reduction makes the numbers bitwise equal
            val_loss, val_acc = means(all_reduce_sum(evaluate(net, val_loader, criterion, device, cfg)[0], world))
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
        synchronize(device)
        # this process's epochs only: a resumed run does not count the time spent before the interruption
        result.fit_seconds = time.perf_counter() - fit_start
    finally:
        logger.close()
    finish_fit(result, model, logger, stopper, cfg, world)
    if world.is_main:  # rank 0 tests alone: the others need not read its checkpoint files (multi-node)
        test(model, test_loader, criterion, device, cfg, saver, splits, result)
    return result


def make_stopper_and_saver(cfg: TrainConfig, world: World) -> tuple[EarlyStopping | None, CheckpointSaver | None]:
    """Early stopping on every rank, checkpoints written by rank 0; neither under barebones."""
    if cfg.barebones:
        return None, None
    saver = CheckpointSaver(cfg.checkpoint_dir, cfg.monitor, cfg.monitor_mode, cfg.save_top_k) if world.is_main else None
    return EarlyStopping(cfg.monitor_mode, cfg.patience, cfg.min_delta), saver


def check_finite(train_sums: torch.Tensor, epoch: int, cfg: TrainConfig) -> torch.Tensor:
    """The reduced epoch sums, or TrainingError before anything is validated or saved (contract item 7)."""
    # one non-finite step loss on any rank makes the reduced loss sum non-finite on every rank
    if not torch.isfinite(train_sums).all():
        raise non_finite_loss(epoch, None if cfg.barebones else cfg.checkpoint_dir)
    return train_sums


def checkpoint_state(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, epoch: int,
                     logger: TrainLogger, stopper: EarlyStopping, result: RunResult, cfg: TrainConfig) -> dict:
    """Everything a resume needs, as tensors and primitives (loadable with weights_only=True)."""
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "epoch": epoch,
            "global_step": logger.global_step, "early_stopping": stopper.state_dict(),
            "history": result.history, "step_losses": torch.tensor(result.step_losses, dtype=torch.float64),
            "rng": rng_state(), "config": cfg.to_dict()}


def checked_resume_path(cfg: TrainConfig) -> Path | None:
    """The checkpoint --resume names, read and checked against cfg's experiment before anything is trained or written."""
    if cfg.resume is None:
        return None
    path = resume_path(cfg)
    load_checkpoint(path, cfg)
    return path


def restore(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler,
            stopper: EarlyStopping | None, saver: CheckpointSaver | None, result: RunResult) -> int:
    """Load a checkpoint's weights, optimizer, schedule, early stopping, top-k, history and RNG; the next epoch."""
    ckpt = load_checkpoint(path)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    if stopper is not None:
        stopper.load_state_dict(ckpt["early_stopping"])
    if saver is not None:
        saver.load_state_dict(ckpt["checkpoints"])
    result.history = ckpt["history"]
    result.step_losses = ckpt["step_losses"].tolist()
    # redundant while every epoch reseeds, but it keeps a resume exact if RNG is ever drawn between epochs
    set_rng_state(ckpt["rng"])
    return ckpt["epoch"] + 1


def finish_fit(result: RunResult, model: nn.Module, logger: TrainLogger, stopper: EarlyStopping | None,
               cfg: TrainConfig, world: World) -> None:
    """Fill in what the run measured: epochs, best score, stop reason, final weights, first step, peak memory."""
    result.epochs_run = len(result.history)
    pick = min if cfg.monitor_mode == "min" else max
    best = pick(result.history, key=lambda e: e[cfg.monitor], default=None)  # ties: the earlier epoch
    result.best_epoch, result.best_score = (best["epoch"], best[cfg.monitor]) if best else (None, None)
    result.stop_reason = "early_stopping" if stopper is not None and stopper.should_stop else "max_epochs"
    result.final_weights_sha256 = replica_digest(model)
    result.first_step_unix = logger.first_step_unix
    if world.device.type == "cuda":
        result.peak_cuda_memory_bytes = torch.cuda.max_memory_allocated(world.device)


def test(model: nn.Module, loader, criterion: nn.Module, device: torch.device, cfg: TrainConfig,
         saver: CheckpointSaver | None, splits: WaferSplits, result: RunResult) -> None:
    """Test the best checkpoint's weights (the final ones without checkpoints); write metrics.json and plots."""
    if saver is not None and saver.best_path is not None:
        model.load_state_dict(load_checkpoint(saver.best_path, cfg)["model"])
    # the bare model, not the DDP wrapper: only this rank runs it, and DDP's forward may start a collective
    _, y_true, y_pred = evaluate(model, loader, criterion, device, cfg)
    finish_run(result, cfg, splits.test.tensors[0], y_true, y_pred)


def print_banner(cfg: TrainConfig, splits: WaferSplits, result: RunResult, start_epoch: int) -> None:
    print(describe(cfg, splits))
    print(f"model: WaferCNN, {result.num_parameters:,} parameters | device {result.device} | precision "
          f"{cfg.precision} | {result.world_size} process(es) x batch {cfg.batch_size} = global batch "
          f"{cfg.batch_size * result.world_size}")
    if cfg.resume:
        print(f"resuming at epoch {start_epoch} from {resume_path(cfg)}")


def report(cfg: TrainConfig) -> None:
    """Train, then print the summary (on rank 0, the one that tests)."""
    result = fit(cfg)
    if result.test:
        print("\n".join(summary_lines(result)))


def main(argv: Sequence[str] | None = None) -> None:
    run_cli(report, prog="python -m plain_pytorch.train",
            description="Train WaferCNN on wafer maps with a hand-written PyTorch loop (torchrun for DDP).", argv=argv)


if __name__ == "__main__":
    main()
