"""The optimizer both sides build, and the learning-rate schedule they step after every optimizer step."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from shared.config import TrainConfig


def lr_factor(cfg: TrainConfig, total_steps: int, step: int) -> float:
    """Multiplier of --lr at optimizer step `step` (0-based) of `total_steps`."""
    if cfg.lr_schedule == "constant":
        return 1.0
    # cosine: linear warm-up over the first warmup_epochs, then half a cosine down to 0 at the last step
    warmup = round(total_steps * cfg.warmup_epochs / cfg.epochs)
    if step < warmup:
        return (step + 1) / warmup  # never 0: the first step already moves the weights
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total_steps - warmup))))


def make_optimizer(parameters, cfg: TrainConfig) -> torch.optim.Adam:
    """Adam with the run's learning rate and weight decay; fused into one kernel with --fused-optimizer."""
    return torch.optim.Adam(parameters, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=cfg.fused_optimizer or None)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int) -> LambdaLR:
    """The schedule as a LambdaLR (its state is the step count, so a resume continues it exactly)."""
    return LambdaLR(optimizer, lambda step: lr_factor(cfg, total_steps, step))
