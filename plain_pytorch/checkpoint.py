"""Checkpoints by hand: atomic files, the best k by the monitored metric, last.pt, exact resume."""

from __future__ import annotations

import operator
import random
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from shared.config import TrainConfig, check_epochs_left, check_same_experiment
from shared.data import experiment_facts
from shared.outputs import resume_file
from shared.runtime import TrainingError, atomic_torch_save, load_torch_file

if TYPE_CHECKING:  # loop.py imports this module
    from plain_pytorch.loop import Parts, TrainState

FORMAT = "wafer-bench/plain/1"
# keys every checkpoint this side writes has (checkpoint_state plus CheckpointSaver's)
CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "epoch", "global_step", "early_stopping",
                   "history", "step_losses", "rng", "config", "checkpoints")


# Lightning: ModelCheckpoint
class CheckpointSaver:
    """Keeps the best `top_k` checkpoints by the monitored metric, and last.pt (timm's, pared)."""

    def __init__(self, directory: str | Path, monitor: str, mode: str, top_k: int) -> None:
        self.directory, self.monitor, self.top_k = Path(directory), monitor, top_k
        self.is_better = operator.lt if mode == "min" else operator.gt
        # [score, file name], best first; ties keep the earlier epoch first
        self.best: list[list] = []

    @property
    def best_path(self) -> Path | None:
        return self.directory / self.best[0][1] if self.best else None

    def save(self, state: dict, epoch: int, score: float) -> None:
        """This epoch's file if it ranks in the top k (deleting the one it displaces); last.pt."""
        name = f"epoch={epoch}-{self.monitor}={score:.4f}.pt"
        ranks = self.top_k > 0 and (len(self.best) < self.top_k
                                    or self.is_better(score, self.best[-1][0]))
        dropped = []
        if ranks:
            at = next((i for i, (s, _) in enumerate(self.best) if self.is_better(score, s)),
                      len(self.best))
            self.best.insert(at, [score, name])
            dropped, self.best = self.best[self.top_k:], self.best[:self.top_k]
        state = {"format": FORMAT, **state, "checkpoints": self.state_dict()}
        if ranks:
            atomic_torch_save(state, self.directory / name)
        atomic_torch_save(state, self.directory / "last.pt")
        for _, old in dropped:  # only after the new files exist: a crash in between loses nothing
            (self.directory / old).unlink(missing_ok=True)

    def state_dict(self) -> dict:
        return {"monitor": self.monitor, "best": [list(entry) for entry in self.best]}

    def load_state_dict(self, state: dict) -> None:
        # a resume into another output_dir starts a fresh top-k: the listed files are not there
        self.best = [[score, name] for score, name in state["best"]
                     if (self.directory / name).is_file()]


def resume_path(cfg: TrainConfig, world_size: int) -> Path | None:
    """The checkpoint --resume names, checked against cfg's experiment before any work is done."""
    path = resume_file(cfg, "last.pt")
    if path is not None:
        check_same_experiment(path, stored_config(cfg), cfg, experiment_facts(cfg, world_size))
        check_epochs_left(path, load_checkpoint(path)["epoch"] + 1, cfg)
    return path


def stored_config(cfg: TrainConfig) -> dict | None:
    """The configuration the checkpoint --resume names was trained with; None without --resume."""
    path = resume_file(cfg, "last.pt")
    if path is None:
        return None
    ckpt = load_checkpoint(path)
    return {**ckpt["config"], **ckpt.get("experiment", {})}  # world size, data hash: kept apart


def load_checkpoint(path: str | Path) -> dict:
    """A plain-side checkpoint (tensors and primitives); TrainingError naming it if unusable."""
    ckpt = load_torch_file(path)
    found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
    if found != FORMAT:
        lightning = isinstance(ckpt, dict) and "pytorch-lightning_version" in ckpt
        raise TrainingError(f"{path}: not a plain_pytorch checkpoint (format tag {found!r}, "
                            f"expected {FORMAT!r})"
                            + ("; it is a Lightning checkpoint, for lightning_impl"
                               if lightning else ""))
    missing = [key for key in CHECKPOINT_KEYS if key not in ckpt]
    if missing:
        raise TrainingError(f"{path}: incomplete plain_pytorch checkpoint "
                            f"(missing {', '.join(missing)})")
    return ckpt


# Lightning: ModelCheckpoint's dump_checkpoint (the file's contents)
def checkpoint_state(parts: Parts, state: TrainState, cfg: TrainConfig, world_size: int) -> dict:
    """Everything a resume needs, as tensors and primitives (loadable with weights_only=True)."""
    return {"model": parts.model.state_dict(), "optimizer": parts.optimizer.state_dict(),
            "scheduler": parts.scheduler.state_dict(), **state.state_dict(), "rng": rng_state(),
            "config": cfg.to_dict(), "experiment": experiment_facts(cfg, world_size)}


# Lightning: Trainer.fit(ckpt_path=...)
def restore(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: LRScheduler,
            state: TrainState) -> None:
    """Load a checkpoint's weights, optimizer, schedule, loop state (stopping, top k) and RNG."""
    ckpt = load_checkpoint(path)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    state.load_state_dict(ckpt)
    # redundant while every epoch reseeds, but a resume stays exact if RNG is drawn between epochs
    set_rng_state(ckpt["rng"])


def rng_state() -> dict:
    """Python, NumPy, torch and (when in use) CUDA generator states, as lists and tensors."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": [version, list(internal), gauss],
            "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
            "torch": torch.get_rng_state(),
            "cuda": [torch.cuda.get_rng_state()] if torch.cuda.is_initialized() else []}


def set_rng_state(state: dict) -> None:
    """Undo rng_state()."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_initialized():
        torch.cuda.set_rng_state(state["cuda"][0])
