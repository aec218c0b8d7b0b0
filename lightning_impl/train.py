"""Train WaferCNN with PyTorch Lightning: `python -m lightning_impl.train [flags]` (see --help).

The Trainer runs the loop; this file only wires the shared pieces into it. Read it next to
plain_pytorch/train.py, which does every one of these steps by hand.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.warnings import PossibleUserWarning

from lightning_impl.callbacks import RunRecorder
from lightning_impl.datamodule import WaferDataModule
from lightning_impl.module import WaferLightningModel
from shared.cli import run_cli
from shared.config import TrainConfig, check_same_experiment
from shared.data import WaferSplits, describe
from shared.model import build_model, count_parameters
from shared.outputs import claim_output_dir
from shared.results import RunResult, finish_run, summary_lines
from shared.runtime import TrainingError, apply_torch_settings, load_torch_file, replica_digest, resolve_device, seed_everything, state_digest

IMPLEMENTATION = "lightning_impl"
# keys every checkpoint this side writes has (ModelCheckpoint with save_weights_only=False)
CHECKPOINT_KEYS = ("state_dict", "hyper_parameters", "loops", "callbacks", "optimizer_states")


def _drop_advert(record: logging.LogRecord) -> bool:
    # the advert, and Ctrl-C's "attempting graceful shutdown" (the CLI prints its own one line for that)
    return "litlogger" not in record.getMessage() and "Detected KeyboardInterrupt" not in record.getMessage()


def silence_noise(cfg: TrainConfig) -> None:
    """Drop the messages Lightning prints that say nothing about this run; every other warning stays."""
    # an advertisement printed by every Trainer(...)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_drop_advert)
    # Lightning 2.6's own use of a torch API deprecated since; nothing a user of this script can change
    warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning)
    if cfg.num_workers == 0:  # the deliberate default: in-memory tensors, the same loaders as the plain side
        warnings.filterwarnings("ignore", r"The '\w+' does not have many workers", PossibleUserWarning)


def aligned_trainer_settings(cfg: TrainConfig, device: torch.device) -> dict:
    """Trainer arguments chosen so Lightning does the same work as the plain loop; each says why."""
    return {
        # the device resolve_device picked for both sides ("auto" in Lightning would also consider MPS/TPU)
        "accelerator": "gpu" if device.type == "cuda" else "cpu",
        "devices": cfg.devices,
        "num_nodes": cfg.num_nodes,
        "strategy": cfg.strategy,
        "precision": "32-true" if cfg.precision == "32" else cfg.precision,  # bf16-mixed: autocast, as plain
        "max_epochs": cfg.epochs,
        "check_val_every_n_epoch": 1,  # validate after every epoch (contract item 5)
        # the plain side has no sanity check; it would also run validation steps before epoch 0
        "num_sanity_val_steps": 0,
        # the shared train sampler already is a seeded DistributedSampler for this rank; Lightning's own
        # would reshuffle with its seed and also shard val/test, which the plain side evaluates whole
        "use_distributed_sampler": False,
        "log_every_n_steps": None if cfg.barebones else cfg.log_every_n_steps,  # barebones rejects a value
        # the flags apply_torch_settings already set; "warn" = warn_only=True there (Lightning also sets
        # CUBLAS_WORKSPACE_CONFIG when deterministic, which the plain side does not)
        "deterministic": "warn" if cfg.deterministic else False,
        "benchmark": not cfg.deterministic,
        "enable_model_summary": False,  # both banners print the parameter count instead
        "default_root_dir": cfg.output_dir,  # nothing may land in ./lightning_logs (contract item 14)
    }


def make_callbacks(cfg: TrainConfig, recorder: RunRecorder) -> list[L.Callback]:
    """Early stopping, best-k + last checkpoints, LR logging and a progress bar (only the recorder in barebones)."""
    if cfg.barebones:
        return [recorder]
    return [
        recorder,
        EarlyStopping(monitor=cfg.monitor, mode=cfg.monitor_mode, patience=cfg.patience, min_delta=cfg.min_delta),
        # enable_version_counter=False: a rerun in the same folder rewrites last.ckpt (as the plain side
        # does) instead of writing last-v1.ckpt next to a stale last.ckpt that --resume last would pick
        ModelCheckpoint(dirpath=cfg.checkpoint_dir, monitor=cfg.monitor, mode=cfg.monitor_mode,
                        save_top_k=cfg.save_top_k, save_last=True, auto_insert_metric_name=False,
                        filename=f"epoch={{epoch}}-{cfg.monitor}={{{cfg.monitor}:.4f}}", enable_version_counter=False),
        LearningRateMonitor(logging_interval="epoch"),  # one "lr-Adam" point per epoch, as the plain logger
        TQDMProgressBar(leave=True),  # leave=True: one line per epoch, its postfix = the epoch's metrics
    ]


def make_trainer(cfg: TrainConfig, device: torch.device, recorder: RunRecorder) -> L.Trainer:
    """The Trainer for cfg; barebones drops logger, checkpoints, early stopping and progress bar."""
    logger = False if cfg.barebones else TensorBoardLogger(save_dir=cfg.output_dir, name="tensorboard", version="",
                                                           default_hp_metric=False)
    return L.Trainer(callbacks=make_callbacks(cfg, recorder), logger=logger, barebones=cfg.barebones,
                     **aligned_trainer_settings(cfg, device))


def fit(cfg: TrainConfig) -> RunResult:
    """Train with the Trainer, test the best checkpoint, write metrics.json and the plots (global rank 0)."""
    with claim_output_dir(cfg):  # refuses a file, a folder in use or another run's folder, before any work
        return _fit(cfg)


def _fit(cfg: TrainConfig) -> RunResult:
    """fit's body, run with the output folder claimed."""
    ckpt_path = checked_resume_path(cfg)
    apply_torch_settings(cfg)
    device = resolve_device(cfg)
    silence_noise(cfg)
    datamodule = WaferDataModule(cfg, pin_memory=device.type == "cuda")
    datamodule.setup("fit")  # splits = split_dataset(cfg), before seeding, as on the plain side
    splits = datamodule.splits
    seed_everything(cfg.seed)
    model = build_model(cfg)
    result = RunResult(IMPLEMENTATION, cfg.to_dict(), str(device), num_parameters=count_parameters(model),
                       initial_weights_sha256=state_digest(model), data_skipped=splits.skipped)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    # compile the inner WaferCNN: its state_dict keys gain "_orig_mod.", `model` keeps the plain ones
    lit = WaferLightningModel(torch.compile(model, mode=cfg.compile_mode) if cfg.compile else model, cfg,
                              splits.class_weights if cfg.class_weights else None)
    if ckpt_path is not None:
        check_weight_shapes(ckpt_path, lit)
    recorder = RunRecorder(device)
    trainer = make_trainer(cfg, device, recorder)
    if trainer.is_global_zero:
        print_banner(cfg, splits, result, trainer.world_size)
    try:
        trainer.fit(lit, datamodule=datamodule, ckpt_path=ckpt_path)
    except SystemExit:
        if trainer.interrupted:  # Lightning turns Ctrl-C into sys.exit(1); the CLI reports it (exit 130)
            raise KeyboardInterrupt from None
        raise
    result.peak_cuda_memory_bytes = torch.cuda.max_memory_allocated() if device.type == "cuda" else None
    result.final_weights_sha256 = replica_digest(model)  # before trainer.test loads the best checkpoint
    finish_fit(result, cfg, trainer, recorder)  # first: trainer.test restores the best checkpoint's callback states
    y_true, y_pred = run_test(trainer, lit, datamodule)
    if trainer.is_global_zero:
        finish_run(result, cfg, splits.test.tensors[0], y_true, y_pred)
    return result


def read_checkpoint(path: str | Path) -> dict:
    """A checkpoint this side wrote, on the CPU; anything else is a TrainingError naming the file."""
    ckpt = load_torch_file(path)
    missing = [key for key in CHECKPOINT_KEYS if not isinstance(ckpt, dict) or key not in ckpt]
    if missing:
        raise TrainingError(f"{path}: not a Lightning checkpoint of this project (missing {', '.join(missing)})")
    return ckpt


def checked_resume_path(cfg: TrainConfig) -> str | None:
    """The checkpoint --resume names, read and checked against cfg's experiment before anything is trained or written."""
    if cfg.resume is None:
        return None
    path = cfg.checkpoint_dir / "last.ckpt" if cfg.resume == "last" else Path(cfg.resume)
    if not path.is_file():
        raise TrainingError(f"--resume {cfg.resume}: no checkpoint at {path}")
    check_same_experiment(path, dict(read_checkpoint(path)["hyper_parameters"]), cfg)
    return str(path)


def check_weight_shapes(path: str, lit: WaferLightningModel) -> None:
    """TrainingError if the checkpoint's weights do not fit the model (a same-config file from elsewhere)."""
    found = {k: tuple(v.shape) for k, v in read_checkpoint(path)["state_dict"].items()}
    expected = {k: tuple(v.shape) for k, v in lit.state_dict().items()}
    if found != expected:
        diff = sorted(set(found.items()) ^ set(expected.items()))[:3]
        raise TrainingError(f"{path}: weights do not fit this model/flags (differing: {diff})")


def finish_fit(result: RunResult, cfg: TrainConfig, trainer: L.Trainer, recorder: RunRecorder) -> None:
    """Fill in what the run measured: epochs, best score, stop reason, timings."""
    result.world_size = trainer.world_size
    result.history, result.step_losses = recorder.history, recorder.step_losses
    result.epochs_run = len(recorder.history)
    result.steps_per_epoch = int(trainer.num_training_batches)
    result.first_step_unix, result.fit_seconds = recorder.first_step_unix, recorder.fit_seconds
    scored = [entry for entry in recorder.history if entry[cfg.monitor] is not None]  # none in barebones
    # ties: the earlier epoch, as ModelCheckpoint's best_model_path
    best = (min if cfg.monitor_mode == "min" else max)(scored, key=lambda e: e[cfg.monitor], default=None)
    result.best_epoch, result.best_score = (best["epoch"], best[cfg.monitor]) if best else (None, None)
    stopper = trainer.early_stopping_callback
    result.stop_reason = "early_stopping" if stopper is not None and stopper.stopped_epoch > 0 else "max_epochs"


def run_test(trainer: L.Trainer, lit: WaferLightningModel,
             datamodule: WaferDataModule) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels and predictions on the test split, from the best checkpoint (final weights without one)."""
    checkpoint = trainer.checkpoint_callback
    ckpt_path = "best" if checkpoint is not None and checkpoint.best_model_path else None
    trainer.test(lit, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)
    y_true, y_pred = (torch.cat(parts).cpu() for parts in zip(*lit.test_outputs))
    return y_true, y_pred


def print_banner(cfg: TrainConfig, splits: WaferSplits, result: RunResult, world_size: int) -> None:
    print(describe(cfg, splits))
    print(f"model: WaferCNN, {result.num_parameters:,} parameters | device {result.device} | precision "
          f"{cfg.precision} | {world_size} process(es) x batch {cfg.batch_size} = global batch "
          f"{cfg.batch_size * world_size}", flush=True)


def report(cfg: TrainConfig) -> None:
    """Train, then print the summary (on global rank 0, the only process that fills result.test)."""
    result = fit(cfg)
    if result.test:
        print(*summary_lines(result), sep="\n")


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    run_cli(report, prog="python -m lightning_impl.train", description=__doc__.splitlines()[0], argv=argv)


if __name__ == "__main__":  # the DDP launcher re-runs this module once per extra process
    main()
