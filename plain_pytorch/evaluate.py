"""Evaluate a plain_pytorch checkpoint: every labelled map of an LSWMD file, or the synthetic test split."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from torch import nn

from plain_pytorch.checkpoint import load_checkpoint
from plain_pytorch.train import evaluate
from shared.cli import evaluation_config, run_evaluate_cli
from shared.config import TrainConfig
from shared.data import evaluation_dataset, make_loader
from shared.model import build_model, count_parameters
from shared.results import RunResult, finish_run
from shared.runtime import TrainingError, apply_torch_settings, resolve_device, state_digest

PROG = "python -m plain_pytorch.evaluate"


def load_model(path: str, ckpt: dict, cfg: TrainConfig) -> nn.Module:
    """The WaferCNN the checkpoint's config describes, with its weights; TrainingError if they do not fit."""
    model = build_model(cfg)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        raise TrainingError(f"{path}: weights do not fit WaferCNN(base_channels={cfg.base_channels}) "
                            f"({str(err).splitlines()[0]})") from err
    return model


def evaluate_checkpoint(args: argparse.Namespace) -> RunResult:
    """Test metrics of the checkpoint's weights on the chosen data, written as metrics.json and plots."""
    ckpt = load_checkpoint(args.checkpoint)
    cfg = evaluation_config(ckpt["config"], args)
    apply_torch_settings(cfg)
    device = resolve_device(cfg)
    model = load_model(args.checkpoint, ckpt, cfg).to(device)
    dataset, skipped = evaluation_dataset(cfg)
    loader = make_loader(dataset, cfg, pin_memory=device.type == "cuda", device=device)
    _, y_true, y_pred = evaluate(model, loader, nn.CrossEntropyLoss(), device, cfg)
    result = RunResult("plain_pytorch", cfg.to_dict(), str(device), num_parameters=count_parameters(model),
                       epochs_run=0, data_skipped=skipped, final_weights_sha256=state_digest(model))
    return finish_run(result, cfg, dataset.tensors[0], y_true, y_pred)


def main(argv: Sequence[str] | None = None) -> None:
    run_evaluate_cli(evaluate_checkpoint, PROG, __doc__, "a plain_pytorch checkpoint (.pt); its config rebuilds the model",
                     argv)


if __name__ == "__main__":
    main()
