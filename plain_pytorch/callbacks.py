"""Hand-written early stopping and checkpoints, which lightning_impl configures as callbacks."""

from __future__ import annotations

from plain_pytorch.checkpoint import CheckpointSaver
from plain_pytorch.distributed import World
from plain_pytorch.early_stopping import EarlyStopping
from shared.config import TrainConfig


# Lightning: EarlyStopping(...), ModelCheckpoint(...) in the Trainer's callbacks
def make_callbacks(cfg: TrainConfig,
                   world: World) -> tuple[EarlyStopping | None, CheckpointSaver | None]:
    """Early stopping on every rank, checkpoints written by rank 0; each only where cfg.uses it."""
    saver = (CheckpointSaver(cfg.checkpoint_dir, cfg.monitor, cfg.monitor_mode, cfg.save_top_k)
             if world.is_main and cfg.uses("checkpoints") else None)
    stopper = (EarlyStopping(cfg.monitor_mode, cfg.patience, cfg.min_delta)
               if cfg.uses("early_stopping") else None)
    return stopper, saver
