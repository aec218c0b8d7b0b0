"""The evaluate command's driver: each side only reads its checkpoint and runs its model over the loader."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from shared.cli import evaluation_config
from shared.config import TrainConfig
from shared.data import evaluation_dataset, experiment_facts, make_loader
from shared.errors import DataError
from shared.model import WaferCNN, count_parameters
from shared.results import RunResult, finish_run
from shared.runtime import TrainingError, apply_torch_settings, resolve_device, state_digest

# (checkpoint path, the file as loaded, config) -> a module holding the WaferCNN with the file's weights
LoadModel = Callable[[str, dict, TrainConfig], nn.Module]
# (that module, loader, config, device) -> labels and predictions on the CPU
Predict = Callable[[nn.Module, DataLoader, TrainConfig, torch.device], tuple[torch.Tensor, torch.Tensor]]


def weights_error(path: str, cfg: TrainConfig, err: RuntimeError) -> TrainingError:
    """The one-line error for a checkpoint whose weights do not fit the WaferCNN its config describes."""
    return TrainingError(f"{path}: weights do not fit WaferCNN(base_channels={cfg.base_channels}) "
                         f"({str(err).splitlines()[0]})")


def check_same_data(path: str, stored: dict, cfg: TrainConfig, split: str, args: argparse.Namespace) -> None:
    """DataError unless the data scored holds the maps the run was trained on: only then is a rebuilt val/test split
    the run's, and only then is the file a checkpoint names (no --data) the data it was trained on."""
    trained = stored.get("data")
    if (trained == "synthetic") != (cfg.data == "synthetic"):
        same = False
    elif "data_sha256" in stored:
        same = stored["data_sha256"] == experiment_facts(cfg, 1)["data_sha256"]  # the content, not the path
    else:  # a checkpoint written before the data's digest was stored: its path is all there is
        same = trained == cfg.data
    if same:
        return
    if args.data is None:
        raise DataError(f"{path} was trained on {trained}, whose content has changed since: give --data with the "
                        f"file it was trained on, or --data FILE to score every map of another file")
    which = f"--split {split}" if args.split else f"--split {split} (the default with --data {cfg.data})"
    raise DataError(f"{which}: --data {cfg.data} does not hold the maps {path} was trained on ({trained}); the "
                    f"rebuilt split would not be the run's (--split all scores every map)")


def evaluate_checkpoint(args: argparse.Namespace, implementation: str, ckpt: dict, stored_config: dict,
                        load_model: LoadModel, predict: Predict) -> RunResult:
    """Test metrics of the checkpoint's weights on the chosen data, written as metrics.json and plots."""
    cfg = evaluation_config(stored_config, args)
    apply_torch_settings(cfg)
    device = resolve_device(cfg)
    model = load_model(args.checkpoint, ckpt, cfg)  # before the data: a wrong file fails at once
    # the default: a file given is new maps, all scored; without --data, the run's own data, its test split
    split = args.split or ("all" if args.data not in (None, "synthetic") else "test")
    if split in ("val", "test") or args.data is None:  # without --data: the file the checkpoint names, checked
        check_same_data(args.checkpoint, stored_config, cfg, split, args)
    dataset, skipped = evaluation_dataset(cfg, split)
    loader = make_loader(dataset, cfg, pin_memory=device.type == "cuda", device=device)
    y_true, y_pred = predict(model, loader, cfg, device)
    net = next(m for m in model.modules() if isinstance(m, WaferCNN))  # a LightningModule holds it as .model
    result = RunResult(implementation, cfg.to_dict(), str(device), num_parameters=count_parameters(net),
                       epochs_run=0, data_skipped=skipped, final_weights_sha256=state_digest(net), scored_split=split)
    return finish_run(result, cfg, dataset.tensors[0], y_true, y_pred)
