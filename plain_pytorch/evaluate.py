"""Evaluate a plain_pytorch checkpoint: every labelled map of an LSWMD file, or the synthetic test split."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.data import TensorDataset

from plain_pytorch.checkpoint import load_checkpoint
from plain_pytorch.train import evaluate
from shared.config import ACCELERATORS, TrainConfig
from shared.data import make_loader, split_dataset, to_inputs
from shared.model import build_model, count_parameters
from shared.results import RunResult, finish_run, summary_lines
from shared.runtime import TrainingError, apply_torch_settings, resolve_device, state_digest
from shared.wm811k import load_wm811k

PROG = "python -m plain_pytorch.evaluate"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a plain_pytorch checkpoint (.pt); its config rebuilds the model")
    parser.add_argument("--data", default="synthetic", help="'synthetic' (its test split) or an LSWMD-format pickle")
    parser.add_argument("--output-dir", default="runs/evaluate", help="folder for metrics.json and the plots")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the checkpoint's")
    parser.add_argument("--accelerator", choices=ACCELERATORS, default="auto")
    parser.add_argument("--image-size", type=int, default=None, help="default: the checkpoint's")
    return parser


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
    # one pass over the data: speed flags (compile, channels_last) are not worth their setup here
    changes = {"data": args.data, "output_dir": args.output_dir, "resume": None, "accelerator": args.accelerator,
               "compile": False, "channels_last": False}
    changes.update({k: v for k, v in (("batch_size", args.batch_size), ("image_size", args.image_size)) if v is not None})
    cfg = TrainConfig(**{**ckpt["config"], **changes})
    apply_torch_settings(cfg)
    device = resolve_device(cfg)
    model = load_model(args.checkpoint, ckpt, cfg).to(device)
    if cfg.data == "synthetic":
        dataset = split_dataset(cfg).test
    else:
        maps = load_wm811k(cfg.data, cfg.image_size)
        dataset = TensorDataset(to_inputs(maps.codes), torch.from_numpy(maps.labels))
    loader = make_loader(dataset, cfg, pin_memory=device.type == "cuda")
    _, y_true, y_pred = evaluate(model, loader, nn.CrossEntropyLoss(), device, cfg)
    result = RunResult("plain_pytorch", cfg.to_dict(), str(device), num_parameters=count_parameters(model),
                       epochs_run=0, final_weights_sha256=state_digest(model))
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
