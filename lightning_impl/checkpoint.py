"""Checkpoints are ModelCheckpoint's; this side only finds, reads and checks what --resume names."""

from __future__ import annotations

from pathlib import Path

from lightning_impl.module import WaferLightningModel
from shared.config import TrainConfig, check_epochs_left, check_same_experiment
from shared.data import experiment_facts
from shared.outputs import resume_file
from shared.runtime import TrainingError, load_torch_file

# keys every checkpoint this side writes has (ModelCheckpoint with save_weights_only=False)
CHECKPOINT_KEYS = ("epoch", "state_dict", "hyper_parameters", "loops", "callbacks",
                   "optimizer_states")
PLAIN_FORMAT = "wafer-bench/plain/"  # the format tag plain_pytorch's checkpoints carry


def resume_path(cfg: TrainConfig, world_size: int) -> Path | None:
    """The checkpoint --resume names, checked against cfg's experiment before any work is done."""
    path = resume_file(cfg, "last.ckpt")
    if path is not None:
        check_same_experiment(path, stored_config(cfg), cfg, experiment_facts(cfg, world_size))
        # "epoch": the last completed one
        check_epochs_left(path, load_checkpoint(path)["epoch"] + 1, cfg)
    return path


def stored_config(cfg: TrainConfig) -> dict | None:
    """The configuration the checkpoint --resume names was trained with; None without --resume."""
    path = resume_file(cfg, "last.ckpt")
    return None if path is None else dict(load_checkpoint(path)["hyper_parameters"])


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint this side wrote, on the CPU; anything else is a TrainingError naming it."""
    ckpt = load_torch_file(path)
    missing = [key for key in CHECKPOINT_KEYS if not isinstance(ckpt, dict) or key not in ckpt]
    if missing:
        plain = isinstance(ckpt, dict) and str(ckpt.get("format", "")).startswith(PLAIN_FORMAT)
        hint = "; it is a plain_pytorch checkpoint, for plain_pytorch" if plain else ""
        raise TrainingError(f"{path}: not a Lightning checkpoint of this project (missing "
                            f"{', '.join(missing)}){hint}")
    return ckpt


def check_weight_shapes(path: Path, lit: WaferLightningModel) -> None:
    """TrainingError if the checkpoint's weights do not fit the model (a same-config file from
    elsewhere)."""
    found = {k: tuple(v.shape) for k, v in load_checkpoint(path)["state_dict"].items()}
    expected = {k: tuple(v.shape) for k, v in lit.state_dict().items()}
    if found != expected:
        diff = sorted(set(found.items()) ^ set(expected.items()))[:3]
        raise TrainingError(f"{path}: weights do not fit this model/flags (differing: {diff})")
