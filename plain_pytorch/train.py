"""Train WaferCNN with a hand-written PyTorch loop: `python -m plain_pytorch.train [flags]` (--help)

Every step the Trainer takes on the Lightning side is written out here; each block it replaces is
marked `# Lightning: <what replaces it>`. Read it next to lightning_impl/train.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from plain_pytorch.callbacks import make_callbacks
from plain_pytorch.checkpoint import (
    CheckpointSaver,
    load_checkpoint,
    restore,
    resume_path,
    stored_config,
)
from plain_pytorch.distributed import (
    World,
    close_distributed,
    init_distributed,
    wait_for_all,
    wrap_model,
)
from plain_pytorch.logger import TrainLogger
from plain_pytorch.loop import Parts, TrainState, run_epochs, run_test
from plain_pytorch.module import configure_optimizers, make_criterion
from plain_pytorch.recorder import RunRecorder
from shared.cli import run_cli
from shared.config import TrainConfig
from shared.data import WaferSplits, make_dataloaders, split_dataset
from shared.model import build_model, count_parameters
from shared.outputs import claim_output_dir
from shared.results import RunResult, best_epoch, finish_run, print_banner, report
from shared.runtime import apply_torch_settings, replica_digest, seed_everything, state_digest

IMPLEMENTATION = "plain_pytorch"
LIGHTNING_ONLY = ("Lightning's side only (python -m lightning_impl.train): the plain loop has no "
                  "defaults of its own to switch to")


def fit(cfg: TrainConfig) -> RunResult:
    """Train, stop early, checkpoint, then test the best weights (one process per device)."""
    world = init_distributed(cfg)  # Lightning: Trainer(strategy="ddp") starts the processes
    try:
        with claim_output_dir(cfg):  # refuses a file, a busy folder, another run's, before any work
            result = _fit(cfg, world)
        wait_for_all(world)  # no rank leaves the process group while rank 0 still tests
        return result
    finally:
        close_distributed()


def _fit(cfg: TrainConfig, world: World) -> RunResult:
    """fit's body, run with the output folder claimed."""
    ckpt_path = resume_path(cfg, world.size)
    apply_torch_settings(cfg)
    device = world.device
    splits = split_dataset(cfg)
    seed_everything(cfg.seed)
    model = build_model(cfg)
    result = RunResult(IMPLEMENTATION, cfg.to_dict(), str(device), world.size,
                       count_parameters(model), initial_weights_sha256=state_digest(model),
                       data_skipped=splits.skipped, train_size=len(splits.train))
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model = model.to(device, non_blocking=True)  # Lightning: the Trainer moves the model
    criterion = make_criterion(cfg, splits.class_weights if cfg.class_weights else None, device)
    # Lightning: WaferDataModule
    train_loader, val_loader, test_loader = make_dataloaders(
        cfg, splits, world.rank, world.size, pin_memory=device.type == "cuda", device=device)
    optimizer, scheduler = configure_optimizers(model, cfg, cfg.epochs * len(train_loader))
    result.steps_per_epoch = len(train_loader)
    # Lightning: the Trainer's own loop state, the EarlyStopping and ModelCheckpoint callbacks
    state = TrainState(*make_callbacks(cfg, world))
    if ckpt_path:  # Lightning: trainer.fit(ckpt_path=...) restores all of it
        restore(ckpt_path, model, optimizer, scheduler, state)
    # Lightning: the strategy's DDP wrapper, and compile
    parts = Parts(model, wrap_model(model, cfg, world), criterion, optimizer, scheduler)
    recorder = RunRecorder(device)
    if world.is_main:
        print_banner(cfg, splits, result)
        if ckpt_path:  # Lightning: the Trainer logs the restore
            print(f"resuming at epoch {state.epoch} from {ckpt_path}")
    # Lightning: TensorBoardLogger, LearningRateMonitor and the progress bar callback
    logger = TrainLogger(cfg, device, world.is_main, first_step=state.global_step)
    try:  # Lightning: trainer.fit(lit, datamodule=datamodule)
        run_epochs(cfg, world, parts, (train_loader, val_loader), state, logger, recorder)
    finally:
        logger.close()
    finish_fit(result, cfg, recorder, state, model, world)
    if world.is_main:  # rank 0 tests alone: the others need not read its checkpoints (multi-node)
        test(cfg, splits, result, parts, test_loader, device, state.saver)
    return result


def finish_fit(result: RunResult, cfg: TrainConfig, recorder: RunRecorder, state: TrainState,
               model: nn.Module, world: World) -> None:
    """Fill in what the run measured: epochs, best score, stop reason, weights, timings, memory."""
    result.history, result.step_losses = state.history, state.step_losses
    result.epochs_run = len(result.history)
    result.best_epoch, result.best_score = best_epoch(result.history, cfg)
    result.stop_reason = "early_stopping" if state.should_stop else "max_epochs"
    result.first_step_unix, result.fit_seconds = recorder.first_step_unix, recorder.fit_seconds
    result.final_weights_sha256 = replica_digest(model)
    if world.device.type == "cuda":
        result.peak_cuda_memory_bytes = torch.cuda.max_memory_allocated(world.device)


def test(cfg: TrainConfig, splits: WaferSplits, result: RunResult, parts: Parts, loader,
         device: torch.device, saver: CheckpointSaver | None) -> None:
    """Test the best checkpoint's weights (else the final ones); write metrics.json and plots."""
    # Lightning: trainer.test(ckpt_path="best")
    if saver is not None and saver.best_path is not None:
        parts.model.load_state_dict(load_checkpoint(saver.best_path)["model"])
    # the bare model, not the DDP wrapper: only this rank runs it; DDP's forward may sync ranks
    y_true, y_pred = run_test(parts.model, parts.criterion, loader, device, cfg)
    finish_run(result, cfg, splits.test.tensors[0], y_true, y_pred)


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    run_cli(lambda cfg: report(fit, cfg), prog="python -m plain_pytorch.train",
            description="Train WaferCNN on wafer maps with a hand-written PyTorch loop "
                        "(torchrun for DDP).", argv=argv, stored_config=stored_config,
            other_side_only={"lightning_defaults": LIGHTNING_ONLY})


if __name__ == "__main__":
    main()
