"""Train WaferCNN with PyTorch Lightning: `python -m lightning_impl.train [flags]` (see --help).

The Trainer runs the loop; this file only wires the shared pieces into it. Read it next to
plain_pytorch/train.py, which does every one of these steps by hand.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import lightning as L
import torch
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from torch import nn

from lightning_impl.callbacks import AtomicCheckpointIO, RunHistory, make_callbacks
from lightning_impl.checkpoint import check_weight_shapes, resume_path, stored_config
from lightning_impl.datamodule import WaferDataModule
from lightning_impl.module import WaferLightningModel
from lightning_impl.recorder import RunRecorder
from shared.cli import run_cli
from shared.config import TrainConfig
from shared.data import WaferSplits, experiment_facts
from shared.model import build_model, count_parameters
from shared.outputs import claim_output_dir
from shared.results import RunResult, best_epoch, finish_run, print_banner, report
from shared.runtime import (
    apply_torch_settings,
    replica_digest,
    resolve_device,
    seed_everything,
    state_digest,
    trainer_device_args,
)

IMPLEMENTATION = "lightning_impl"


# the advert; Ctrl-C's "attempting graceful shutdown" and SIGTERM's notice (the CLI prints its own
# line for both); the accelerator inventory (the banner names the device the run uses); the
# schedule's step count being worked out
NOISE = ("litlogger", "Detected KeyboardInterrupt", "Received SIGTERM", "GPU available:",
         "TPU available:", "HPU available:", "to estimate number of stepping batches")


def _drop_advert(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(noise in message for noise in NOISE)


def silence_noise(cfg: TrainConfig) -> None:
    """Drop the messages Lightning prints that say nothing about this run; other warnings stay."""
    # the NOISE lines, from the two loggers that print them
    for name in ("utilities.rank_zero", "trainer.connectors.signal_connector"):
        logging.getLogger(f"lightning.pytorch.{name}").addFilter(_drop_advert)
    # Lightning 2.6's own use of a torch API deprecated since; nothing a user here can change
    warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            FutureWarning)
    # per-step points follow the global step (both sides): short epochs still get them
    warnings.filterwarnings("ignore", r"The number of training batches \(\d+\) is smaller than "
                            r"the logging interval", PossibleUserWarning)
    if cfg.resume is not None:  # ModelCheckpoint's, on the folder a resume continues: expected
        warnings.filterwarnings("ignore", r"Checkpoint directory .* exists and is not empty")
    if cfg.num_workers == 0:  # the deliberate default: in-memory tensors, the plain side's loaders
        warnings.filterwarnings("ignore", r"The '\w+' does not have many workers",
                                PossibleUserWarning)


def aligned_trainer_settings(cfg: TrainConfig, device: torch.device) -> dict:
    """Trainer arguments chosen so Lightning does the same work as the plain loop; each says why."""
    return {
        **trainer_device_args(cfg, device),
        "devices": cfg.devices,
        "num_nodes": cfg.num_nodes,
        "strategy": cfg.strategy,
        "max_epochs": cfg.epochs,
        "check_val_every_n_epoch": 1,  # validate after every epoch, as the plain loop does
        # the plain side has no sanity check; it would also run validation steps before epoch 0
        "num_sanity_val_steps": 0,
        # the shared train sampler (seeded DistributedSampler or balanced draw) already shards by
        # rank; Lightning's own would reshuffle with its seed and shard val/test, which the plain
        # side evaluates whole
        "use_distributed_sampler": False,
        # barebones rejects a value
        "log_every_n_steps": None if cfg.barebones else cfg.log_every_n_steps,
        # without these the Trainer would add a default ModelCheckpoint / progress bar of its own
        "enable_checkpointing": None if cfg.barebones else cfg.uses("checkpoints"),
        "enable_progress_bar": None if cfg.barebones else cfg.uses("progress_bar"),
        # the flags apply_torch_settings already set; "warn" = warn_only=True there (Lightning also
        # sets CUBLAS_WORKSPACE_CONFIG when deterministic, which the plain side does not)
        "deterministic": "warn" if cfg.deterministic else False,
        "benchmark": not cfg.deterministic,
        "enable_model_summary": False,  # both banners print the parameter count instead
        # Lightning would otherwise write ./lightning_logs in the caller's folder
        "default_root_dir": cfg.output_dir,
    }


def make_trainer(cfg: TrainConfig, device: torch.device, recorder: RunRecorder,
                 history: RunHistory) -> L.Trainer:
    """The Trainer for cfg: its callbacks and logger are the features cfg.uses."""
    silence_noise(cfg)
    logger = False
    if cfg.uses("tensorboard"):
        from lightning.pytorch.loggers import TensorBoardLogger  # imports TensorBoard: only when on

        logger = TensorBoardLogger(save_dir=cfg.output_dir, name="tensorboard", version="",
                                   default_hp_metric=False)
    return L.Trainer(callbacks=[recorder, history, *make_callbacks(cfg)], logger=logger,
                     barebones=cfg.barebones, plugins=[AtomicCheckpointIO()],
                     **aligned_trainer_settings(cfg, device))


def fit(cfg: TrainConfig) -> RunResult:
    """Train, stop early, checkpoint, then test the best weights (one process per device)."""
    with claim_output_dir(cfg):  # refuses a file, a busy folder, another run's, before any work
        return _fit(cfg)


def _fit(cfg: TrainConfig) -> RunResult:
    """fit's body, run with the output folder claimed."""
    world_size = cfg.devices * cfg.num_nodes  # the processes Trainer(devices, num_nodes) runs
    ckpt_path = resume_path(cfg, world_size)
    apply_torch_settings(cfg)
    device = resolve_device(cfg)
    datamodule = WaferDataModule(cfg, pin_memory=device.type == "cuda")
    datamodule.setup("fit")  # splits = split_dataset(cfg), before seeding, as on the plain side
    splits = datamodule.splits
    seed_everything(cfg.seed)
    model = build_model(cfg)
    result = RunResult(IMPLEMENTATION, cfg.to_dict(), str(device),
                       num_parameters=count_parameters(model),
                       initial_weights_sha256=state_digest(model), data_skipped=splits.skipped,
                       train_size=len(splits.train))
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.compile:  # in place: the state_dict keys stay WaferCNN's, for an uncompiled one
        model.compile(mode=cfg.compile_mode)
    lit = WaferLightningModel(model, cfg, splits.class_weights if cfg.class_weights else None,
                              experiment_facts(cfg, world_size))
    if ckpt_path is not None:
        check_weight_shapes(ckpt_path, lit)
    recorder = RunRecorder(device)
    history = RunHistory(recorder)
    trainer = make_trainer(cfg, device, recorder, history)
    result.world_size = trainer.world_size
    if trainer.is_global_zero:
        print_banner(cfg, splits, result)
    try:
        trainer.fit(lit, datamodule=datamodule, ckpt_path=ckpt_path)
    except SystemExit:
        if trainer.interrupted:  # Lightning turns Ctrl-C into sys.exit(1); the CLI exits 130
            raise KeyboardInterrupt from None
        raise
    # first: trainer.test restores the best checkpoint, callback states included
    finish_fit(result, cfg, recorder, history, model, trainer)
    test(cfg, splits, result, trainer, lit, datamodule)
    return result


def finish_fit(result: RunResult, cfg: TrainConfig, recorder: RunRecorder, history: RunHistory,
               model: nn.Module, trainer: L.Trainer) -> None:
    """Fill in what the run measured: epochs, best score, stop reason, weights, timings, memory."""
    result.history, result.step_losses = history.history, history.step_losses
    result.epochs_run = len(result.history)
    result.best_epoch, result.best_score = best_epoch(result.history, cfg)
    stopper = trainer.early_stopping_callback
    stopped = stopper is not None and stopper.stopped_epoch > 0
    result.stop_reason = "early_stopping" if stopped else "max_epochs"
    result.first_step_unix, result.fit_seconds = recorder.first_step_unix, recorder.fit_seconds
    result.final_weights_sha256 = replica_digest(model)  # before trainer.test loads the best one
    if trainer.strategy.root_device.type == "cuda":
        device = trainer.strategy.root_device
        result.peak_cuda_memory_bytes = torch.cuda.max_memory_allocated(device)
    result.steps_per_epoch = int(trainer.num_training_batches)


def test(cfg: TrainConfig, splits: WaferSplits, result: RunResult, trainer: L.Trainer,
         lit: WaferLightningModel, datamodule: WaferDataModule) -> None:
    """Test the best checkpoint's weights (else the final ones); write metrics.json and plots."""
    checkpoint = trainer.checkpoint_callback  # the best-k one (the last.ckpt one is listed second)
    # what ckpt_path="best" loads, named: "best" would warn that there are two ModelCheckpoints
    best = checkpoint.best_model_path if checkpoint else None
    trainer.test(lit, datamodule=datamodule, ckpt_path=best or None, verbose=False)
    if trainer.is_global_zero:  # every rank tests (the test loop is collective); rank 0 writes
        y_true, y_pred = lit.test_predictions()
        finish_run(result, cfg, splits.test.tensors[0], y_true, y_pred)


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    run_cli(lambda cfg: report(fit, cfg), prog="python -m lightning_impl.train",
            description="Train WaferCNN on wafer maps with a LightningModule and lightning.Trainer "
                        "(--strategy ddp for DDP).", argv=argv, stored_config=stored_config)


if __name__ == "__main__":  # the DDP launcher re-runs this module once per extra process
    main()
