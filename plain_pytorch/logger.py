"""Console and TensorBoard output by hand: Lightning's progress bar, logger, LearningRateMonitor."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tqdm import tqdm

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

from shared.config import BAR_REFRESH_STEPS, TrainConfig


# Lightning: TensorBoardLogger + TQDMProgressBar + LearningRateMonitor
class TrainLogger:
    """On rank 0: draws the progress bar, writes epoch lines and scalars at the loop's step count.

    TensorBoard tags and steps are those of Lightning's TensorBoardLogger, so the two event files
    line up. Without tensorboard/progress_bar (cfg.uses) that part is left out; the epoch lines
    always remain.
    """

    def __init__(self, cfg: TrainConfig, device: torch.device, is_main: bool,
                 first_step: int = 0) -> None:
        self.cfg, self.device, self.is_main = cfg, device, is_main
        self.bar: tqdm | None = None
        self.writer: SummaryWriter | None = None
        if is_main and cfg.uses("tensorboard"):
            from torch.utils.tensorboard import (
                SummaryWriter,  # TensorBoard's import costs ~1 s; only when on
            )

            # purge_step hides what a killed run logged after its last checkpoint
            self.writer = SummaryWriter(log_dir=str(Path(cfg.output_dir) / "tensorboard"),
                                        purge_step=first_step or None)

    def start_epoch(self, epoch: int, steps: int, lr: float, global_step: int) -> None:
        """The learning rate to TensorBoard (as LearningRateMonitor at epoch start), a fresh bar."""
        if self.writer is not None:
            self.writer.add_scalar("lr-Adam", lr, global_step)
        if self.is_main and self.cfg.uses("progress_bar"):
            # redrawn by step() alone, every BAR_REFRESH_STEPS steps (tqdm's own 0.1 s throttle
            # would make the number of redraws depend on each side's speed)
            self.bar = tqdm(total=steps, desc=f"Epoch {epoch}", file=sys.stdout, leave=False,
                            dynamic_ncols=True, mininterval=float("inf"))

    def step(self, loss: torch.Tensor, global_step: int) -> None:
        """After optimizer step global_step: the loss to bar and TensorBoard when either shows."""
        logged = self.writer is not None and global_step % self.cfg.log_every_n_steps == 0
        redraw = self.bar is not None and ((self.bar.n + 1) % BAR_REFRESH_STEPS == 0
                                           or self.bar.n + 1 == self.bar.total)
        if logged or redraw:
            value = loss.item()  # a host sync on CUDA: only at the steps that show the loss
            if logged:
                self.writer.add_scalar("train_loss_step", value, global_step - 1)
            if redraw:  # Lightning: TQDMProgressBar(refresh_rate=BAR_REFRESH_STEPS)
                self.bar.set_postfix(loss=f"{value:.4f}", refresh=False)
                self.bar.n += 1
                self.bar.refresh()
                return
        if self.bar is not None:
            self.bar.n += 1

    def end_epoch(self, entry: dict, global_step: int) -> None:
        """Epoch metrics to TensorBoard (at the epoch's last step, as Lightning), a console line."""
        if self.writer is not None:
            for tag in ("train_loss", "train_acc", "val_loss", "val_acc"):
                self.writer.add_scalar(tag, entry[tag], global_step - 1)
            self.writer.flush()
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.is_main:
            print(f"epoch {entry['epoch']}: train_loss {entry['train_loss']:.4f} "
                  f"train_acc {entry['train_acc']:.4f} val_loss {entry['val_loss']:.4f} "
                  f"val_acc {entry['val_acc']:.4f} ({entry['train_seconds']:.1f} s)", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()
