"""Evaluate a lightning_impl checkpoint: every labelled map of an LSWMD file, or the synthetic test split."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

import lightning as L
import torch
from torch.utils.data import TensorDataset

from lightning_impl.module import WaferLightningModel
from lightning_impl.train import read_checkpoint, silence_noise
from shared.config import ACCELERATORS, TrainConfig
from shared.data import make_loader, split_dataset, to_inputs
from shared.model import build_model, count_parameters
from shared.results import RunResult, finish_run, summary_lines
from shared.runtime import TrainingError, apply_torch_settings, resolve_device, state_digest
from shared.wm811k import load_wm811k

PROG = "python -m lightning_impl.evaluate"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--checkpoint", required=True,
                        help="a lightning_impl checkpoint (.ckpt); its hparams rebuild the model")
    parser.add_argument("--data", default="synthetic", help="'synthetic' (its test split) or an LSWMD-format pickle")
    parser.add_argument("--output-dir", default="runs/evaluate", help="folder for metrics.json and the plots")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the checkpoint's")
    parser.add_argument("--accelerator", choices=ACCELERATORS, default="auto")
    parser.add_argument("--image-size", type=int, default=None, help="default: the checkpoint's")
    return parser


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
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    stored = {k: v for k, v in ckpt["hyper_parameters"].items() if k in fields}  # the training run's flags
    changes = {"data": args.data, "output_dir": args.output_dir, "resume": None, "accelerator": args.accelerator,
               "batch_size": stored["batch_size"] if args.batch_size is None else args.batch_size,
               "image_size": stored["image_size"] if args.image_size is None else args.image_size,
               "compile": False, "devices": 1, "num_nodes": 1, "strategy": "auto"}
    cfg = TrainConfig(**{**stored, **changes})
    apply_torch_settings(cfg)
    silence_noise(cfg)
    device = resolve_device(cfg)
    lit = load_model(args.checkpoint, ckpt, cfg)
    if cfg.data == "synthetic":
        dataset = split_dataset(cfg).test
    else:
        maps = load_wm811k(cfg.data, cfg.image_size)
        dataset = TensorDataset(to_inputs(maps.codes), torch.from_numpy(maps.labels))
    loader = make_loader(dataset, cfg, pin_memory=device.type == "cuda")
    trainer = L.Trainer(accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, logger=False,
                        precision="32-true" if cfg.precision == "32" else cfg.precision, enable_model_summary=False,
                        enable_checkpointing=False, default_root_dir=cfg.output_dir)
    trainer.test(lit, dataloaders=loader, verbose=False)
    y_true, y_pred = (torch.cat(parts).cpu() for parts in zip(*lit.test_outputs))
    result = RunResult("lightning_impl", cfg.to_dict(), str(device), num_parameters=count_parameters(lit.model),
                       epochs_run=0, final_weights_sha256=state_digest(lit.model))
    return finish_run(result, cfg, dataset.tensors[0], y_true, y_pred)


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        result = evaluate_checkpoint(args)
    except (TrainingError, ValueError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        sys.exit(1)
    maps = sum(c["support"] for c in result.test["per_class"].values())
    print(f"{args.checkpoint} on {args.data}: {maps} maps")
    print(summary_lines(result)[1])
    print(f"outputs in {args.output_dir}")


if __name__ == "__main__":
    main()
