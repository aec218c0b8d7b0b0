"""Evaluate a lightning_impl checkpoint: every labelled map of an LSWMD file, or the synthetic test split."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import lightning as L
import torch

from lightning_impl.module import WaferLightningModel
from lightning_impl.train import read_checkpoint, silence_noise
from shared.cli import evaluation_config, run_evaluate_cli
from shared.config import TrainConfig
from shared.data import evaluation_dataset, make_loader
from shared.model import build_model, count_parameters
from shared.results import RunResult, finish_run
from shared.runtime import TrainingError, apply_torch_settings, resolve_device, state_digest

PROG = "python -m lightning_impl.evaluate"


def load_model(path: str, ckpt: dict, cfg: TrainConfig) -> WaferLightningModel:
    """The WaferCNN the checkpoint's hparams describe, with its weights; TrainingError if they do not fit."""
    model = build_model(cfg)
    # the LightningModule's keys are "model.<WaferCNN key>" ("model._orig_mod.<key>" after --compile)
    weights = {k.removeprefix("model.").replace("_orig_mod.", ""): v
               for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise TrainingError(f"{path}: weights do not fit WaferCNN(base_channels={cfg.base_channels}) "
                            f"({str(err).splitlines()[0]})") from err
    return WaferLightningModel(model, cfg, ckpt["state_dict"].get("criterion.weight"))


def evaluate_checkpoint(args: argparse.Namespace) -> RunResult:
    """Test metrics of the checkpoint's weights on the chosen data (Trainer.test), as metrics.json and plots."""
    ckpt = read_checkpoint(args.checkpoint)
    cfg = evaluation_config(ckpt["hyper_parameters"], args)
    apply_torch_settings(cfg)
    silence_noise(cfg)
    device = resolve_device(cfg)
    lit = load_model(args.checkpoint, ckpt, cfg)
    dataset, skipped = evaluation_dataset(cfg)
    loader = make_loader(dataset, cfg, pin_memory=device.type == "cuda", device=device)
    trainer = L.Trainer(accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, logger=False,
                        precision="32-true" if cfg.precision == "32" else cfg.precision, enable_model_summary=False,
                        enable_checkpointing=False, default_root_dir=cfg.output_dir)
    trainer.test(lit, dataloaders=loader, verbose=False)
    y_true, y_pred = (torch.cat(parts).cpu() for parts in zip(*lit.test_outputs))
    result = RunResult("lightning_impl", cfg.to_dict(), str(device), num_parameters=count_parameters(lit.model),
                       epochs_run=0, data_skipped=skipped, final_weights_sha256=state_digest(lit.model))
    return finish_run(result, cfg, dataset.tensors[0], y_true, y_pred)


def main(argv: Sequence[str] | None = None) -> None:
    run_evaluate_cli(evaluate_checkpoint, PROG, __doc__,
                     "a lightning_impl checkpoint (.ckpt); its hparams rebuild the model", argv)


if __name__ == "__main__":
    main()
