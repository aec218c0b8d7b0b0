"""Evaluate a lightning_impl checkpoint: its run's test or val split, or every map (--split)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader

from lightning_impl.checkpoint import load_checkpoint
from lightning_impl.module import WaferLightningModel
from lightning_impl.train import silence_noise
from shared import evaluation
from shared.cli import run_evaluate_cli
from shared.config import TrainConfig
from shared.model import build_model
from shared.results import RunResult
from shared.runtime import trainer_device_args

IMPLEMENTATION = "lightning_impl"
PROG = "python -m lightning_impl.evaluate"


def load_model(path: str, ckpt: dict, cfg: TrainConfig) -> WaferLightningModel:
    """The LightningModule the checkpoint's hparams describe, with its weights; TrainingError if
    they do not fit."""
    try:
        return WaferLightningModel.load_from_checkpoint(
            path, map_location="cpu", model=build_model(cfg), cfg=cfg,
            loss_weights=ckpt["state_dict"].get("criterion.weight"))
    except RuntimeError as err:
        raise evaluation.weights_error(path, cfg, err) from err


def predict(lit: WaferLightningModel, loader: DataLoader, cfg: TrainConfig,
            device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels and predictions over the loader, by Trainer.test."""
    silence_noise(cfg)
    # no bar: the plain side shows none while it scores
    trainer = L.Trainer(devices=1, logger=False, enable_model_summary=False,
                        enable_progress_bar=False, enable_checkpointing=False,
                        default_root_dir=cfg.output_dir,
                        **trainer_device_args(cfg, device))
    trainer.test(lit, dataloaders=loader, verbose=False)
    return lit.test_predictions()


def evaluate_checkpoint(args: argparse.Namespace) -> RunResult:
    """Test metrics of the checkpoint's weights on the chosen data, as metrics.json and plots."""
    ckpt = load_checkpoint(args.checkpoint)
    return evaluation.evaluate_checkpoint(args, IMPLEMENTATION, ckpt, ckpt["hyper_parameters"],
                                          load_model, predict)


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    run_evaluate_cli(evaluate_checkpoint, PROG, __doc__,
                     "a lightning_impl checkpoint (.ckpt); its hparams rebuild the model", argv)


if __name__ == "__main__":
    main()
