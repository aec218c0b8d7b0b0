"""lightning_impl in process: outputs, early stopping, NaN stop, bad checkpoints, data parity, CLI flags, evaluate."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import tiny
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lightning_impl import evaluate, train
from lightning_impl.datamodule import WaferDataModule
from lightning_impl.module import WaferLightningModel
from shared.config import TrainConfig
from shared.data import make_dataloaders, random_dihedral
from shared.results import RunResult
from shared.runtime import TrainingError

HISTORY_KEYS = {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "train_seconds", "train_cpu_seconds"}



@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[TrainConfig, RunResult]:
    cfg = tiny(tmp_path_factory.mktemp("lightning") / "run", log_every_n_steps=1, save_top_k=1)
    return cfg, train.fit(cfg)


@pytest.mark.slow
def test_run_writes_metrics_plots_tensorboard_and_checkpoints(trained):
    cfg, result = trained
    out = Path(cfg.output_dir)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {f.name for f in dataclasses.fields(RunResult)}
    assert metrics["implementation"] == "lightning_impl" and metrics["epochs_run"] == 2
    assert [set(entry) for entry in metrics["history"]] == [HISTORY_KEYS] * 2
    assert [entry["epoch"] for entry in metrics["history"]] == [0, 1]
    assert len(metrics["step_losses"]) == 2 * metrics["steps_per_epoch"] == 2 * 5  # 75 training maps, batch 16
    assert metrics["initial_weights_sha256"] != metrics["final_weights_sha256"]
    assert 0 <= metrics["test"]["accuracy"] <= 1 and metrics["stop_reason"] == "max_epochs"
    assert (out / "confusion_matrix.png").stat().st_size > 0 and (out / "sample_predictions.png").stat().st_size > 0
    # top-1 by val_loss plus last; the kept one is the epoch reported as best
    names = sorted(p.name for p in cfg.checkpoint_dir.glob("*.ckpt"))
    assert names == [f"epoch={result.best_epoch}-val_loss={result.best_score:.4f}.ckpt", "last.ckpt"]
    best = min(metrics["history"], key=lambda entry: entry["val_loss"])
    assert (result.best_epoch, result.best_score) == (best["epoch"], best["val_loss"])
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train_loss_step", "train_loss", "train_acc", "val_loss", "val_acc", "lr-Adam"} <= tags
    assert len(events.Scalars("train_loss_step")) == 10  # log_every_n_steps=1
    assert [e.value for e in events.Scalars("val_loss")] == pytest.approx([h["val_loss"] for h in result.history])


@pytest.mark.slow
def test_early_stopping_stops_after_patience_epochs_without_improvement(tiny_cfg):
    # min_delta=10: only epoch 0 (against +inf) counts as an improvement, so the stop comes at epoch `patience`
    result = train.fit(tiny_cfg.replace(epochs=6, patience=1, min_delta=10.0))
    assert result.stop_reason == "early_stopping"
    assert result.epochs_run == 2 and [entry["epoch"] for entry in result.history] == [0, 1]


@pytest.mark.slow
def test_non_finite_loss_stops_before_checkpointing(tiny_cfg, monkeypatch):
    step = WaferLightningModel.model_step

    def poisoned(self, batch):
        loss, preds, y = step(self, batch)
        return (loss * float("nan") if self.training and self.current_epoch == 1 else loss), preds, y

    monkeypatch.setattr(WaferLightningModel, "model_step", poisoned)
    with pytest.raises(TrainingError, match=f"non-finite training loss in epoch 1.*checkpoints so far are kept in {tiny_cfg.checkpoint_dir}"):
        train.fit(tiny_cfg)
    last = torch.load(tiny_cfg.checkpoint_dir / "last.ckpt", weights_only=True)
    assert last["epoch"] == 0
    assert all(torch.isfinite(t).all() for t in last["state_dict"].values() if t.is_floating_point())
    assert [p.name.split("-")[0] for p in tiny_cfg.checkpoint_dir.glob("epoch=*")] == ["epoch=0"]
    assert not (Path(tiny_cfg.output_dir) / "metrics.json").exists()


def _write_bad_checkpoint(kind: str, path: Path, trained_last: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "text":
        path.write_text("not a checkpoint")
    elif kind == "truncated":
        path.write_bytes(trained_last.read_bytes()[:50_000])
    elif kind == "plain_side":
        torch.save({"model": {}, "optimizer": {}, "epoch": 3}, path)
    else:  # a Lightning checkpoint of a wider model
        ckpt = torch.load(trained_last, weights_only=True)
        ckpt["state_dict"] = {k: torch.cat([v, v]) if v.ndim else v for k, v in ckpt["state_dict"].items()}
        torch.save(ckpt, path)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["text", "truncated", "plain_side", "other_shapes"])
def test_bad_resume_checkpoint_is_named_and_nothing_is_written(kind, trained, tiny_cfg):
    last = tiny_cfg.checkpoint_dir / "last.ckpt"
    _write_bad_checkpoint(kind, last, trained[0].checkpoint_dir / "last.ckpt")
    before = last.read_bytes()
    with pytest.raises(TrainingError, match=f"^{last}: "):
        train.fit(tiny_cfg.replace(resume="last"))
    assert last.read_bytes() == before
    assert sorted(p.name for p in Path(tiny_cfg.output_dir).rglob("*")) == ["checkpoints", "last.ckpt"]


def test_resume_last_without_checkpoint_names_the_path(tiny_cfg):
    with pytest.raises(TrainingError, match=f"no checkpoint at {tiny_cfg.checkpoint_dir / 'last.ckpt'}"):
        train.fit(tiny_cfg.replace(resume="last"))


@pytest.mark.parametrize(("rank", "world_size"), [(0, 1), (1, 2)])
def test_datamodule_serves_the_shared_loaders_batches(tiny_cfg, rank, world_size):
    datamodule = WaferDataModule(tiny_cfg)
    datamodule.trainer = SimpleNamespace(global_rank=rank, world_size=world_size,
                                         strategy=SimpleNamespace(root_device=torch.device("cpu")))
    datamodule.setup("fit")
    shared_loader = make_dataloaders(tiny_cfg, datamodule.splits, rank, world_size)[0]
    for epoch in (0, 3):
        ours = datamodule.train_dataloader()
        ours.sampler.set_epoch(epoch)  # what Lightning does before each epoch
        shared_loader.sampler.set_epoch(epoch)
        pairs = list(zip(ours, shared_loader, strict=True))
        assert pairs and all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in pairs)


def test_augmentation_only_on_training_batches(tiny_cfg):
    datamodule = WaferDataModule(tiny_cfg.replace(augment=True))
    x, y = torch.rand(8, 1, 32, 32), torch.arange(8)
    datamodule.trainer = SimpleNamespace(training=False)
    assert torch.equal(datamodule.on_after_batch_transfer((x, y), 0)[0], x)
    datamodule.trainer = SimpleNamespace(training=True)
    torch.manual_seed(0)
    augmented = datamodule.on_after_batch_transfer((x, y), 0)[0]
    torch.manual_seed(0)
    assert torch.equal(augmented, random_dihedral(x)) and not torch.equal(augmented, x)


@pytest.mark.parametrize("bogus", ["text", "plain_side", "missing"])
def test_evaluate_cli_rejects_a_bogus_checkpoint(tmp_path, call_main, bogus):
    path = tmp_path / ("last.pt" if bogus == "plain_side" else "epoch=1.ckpt")
    if bogus == "text":
        path.write_text("not a checkpoint")
    elif bogus == "plain_side":
        torch.save({"model": {}, "optimizer": {}, "epoch": 1, "config": {}}, path)
    code, _, err = call_main(evaluate.main, "--checkpoint", str(path), "--output-dir", str(tmp_path / "out"))
    assert code == 1 and str(path) in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_lightning_noise_is_dropped_and_the_rest_stays(tiny_cfg, caplog):
    """The accelerator inventory and the advert are dropped; Lightning's other lines (a restore) stay."""
    import logging

    from lightning_impl.train import silence_noise

    silence_noise(tiny_cfg)
    log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    with caplog.at_level(logging.INFO):
        for line in ("GPU available: False, used: False", "TPU available: False, using: 0 TPU cores",
                     "Restoring states from the checkpoint path at x.ckpt"):
            log.info(line)
    assert [r.getMessage() for r in caplog.records] == ["Restoring states from the checkpoint path at x.ckpt"]


def test_a_checkpoint_write_killed_before_its_rename_leaves_the_previous_file(tiny_cfg, tmp_path, monkeypatch):
    """The Trainer writes checkpoints through a temp file beside the target, renamed when complete (Lightning's
    own writer goes through $TMPDIR and, on another filesystem, copies over last.ckpt)."""
    import os

    from lightning_impl.callbacks import AtomicCheckpointIO

    recorder = train.RunRecorder(torch.device("cpu"))
    trainer = train.make_trainer(tiny_cfg, torch.device("cpu"), recorder, train.RunHistory(recorder))
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    target = tmp_path / "checkpoints" / "last.ckpt"
    trainer.strategy.checkpoint_io.save_checkpoint({"epoch": 1}, target)

    def killed(src, dst):  # the process dies after writing the new file, before renaming it
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        trainer.strategy.checkpoint_io.save_checkpoint({"epoch": 2}, target)
    monkeypatch.undo()
    assert torch.load(target, weights_only=True)["epoch"] == 1
