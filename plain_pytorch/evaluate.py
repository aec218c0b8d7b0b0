"""Evaluate a plain_pytorch checkpoint: its run's test or val split, or every map (--split)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from plain_pytorch.checkpoint import load_checkpoint
from plain_pytorch.loop import run_test
from shared import evaluation
from shared.cli import run_evaluate_cli
from shared.config import TrainConfig
from shared.model import build_model
from shared.results import RunResult

IMPLEMENTATION = "plain_pytorch"
PROG = "python -m plain_pytorch.evaluate"


def load_model(path: str, ckpt: dict, cfg: TrainConfig) -> nn.Module:
    """The WaferCNN the checkpoint's config describes, with its weights; TrainingError if
    they do not fit."""
    model = build_model(cfg)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        raise evaluation.weights_error(path, cfg, err) from err
    return model


def predict(model: nn.Module, loader: DataLoader, cfg: TrainConfig,
            device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels and predictions over the loader, by the training loop's own evaluate."""
    return run_test(model.to(device), nn.CrossEntropyLoss(), loader, device, cfg)


def evaluate_checkpoint(args: argparse.Namespace) -> RunResult:
    """Test metrics of the checkpoint's weights on the chosen data, as metrics.json and plots."""
    ckpt = load_checkpoint(args.checkpoint)
    stored = {**ckpt["config"], **ckpt.get("experiment", {})}  # with the data digest (--split val)
    return evaluation.evaluate_checkpoint(args, IMPLEMENTATION, ckpt, stored, load_model, predict)


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    run_evaluate_cli(evaluate_checkpoint, PROG, __doc__,
                     "a plain_pytorch checkpoint (.pt); its config rebuilds the model", argv)


if __name__ == "__main__":
    main()
