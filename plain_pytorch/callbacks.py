"""The hand-written early stopping and checkpoints that lightning_impl configures as callbacks instead."""

from __future__ import annotations

from plain_pytorch.checkpoint import CheckpointSaver
from plain_pytorch.distributed import World
from plain_pytorch.early_stopping import EarlyStopping
from shared.config import TrainConfig


# Lightning: EarlyStopping(...), ModelCheckpoint(...) in the Trainer's callbacks
def make_callbacks(cfg: TrainConfig, world: World) -> tuple[EarlyStopping | None, CheckpointSaver | None]:
    """Early stopping on every rank, checkpoints written by rank 0; neither under barebones."""
    if cfg.barebones:
        return None, None
    saver = CheckpointSaver(cfg.checkpoint_dir, cfg.monitor, cfg.monitor_mode, cfg.save_top_k) if world.is_main else None
    return EarlyStopping(cfg.monitor_mode, cfg.patience, cfg.min_delta), saver
