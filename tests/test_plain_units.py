"""plain_pytorch's hand-written parts in isolation: early stopping, top-k checkpoints, atomic saves, bad input."""

from __future__ import annotations

import os
import sys

import pytest
import torch

from plain_pytorch import train
from plain_pytorch.checkpoint import FORMAT, CheckpointSaver, load_checkpoint, rng_state, set_rng_state
from plain_pytorch.early_stopping import EarlyStopping
from plain_pytorch.loop import TrainState
from shared.runtime import TrainingError


def stop_index(stopper: EarlyStopping, values: list[float]) -> int | None:
    """Index of the epoch after which the stopper says stop, or None."""
    for i, value in enumerate(values):
        if stopper.step(value):
            return i
    return None


@pytest.mark.parametrize(("mode", "patience", "min_delta", "values", "expected"), [
    ("min", 2, 0.0, [1.0, 0.9, 0.95, 0.91, 0.8], 3),
    ("min", 2, 0.0, [1.0, 0.97, 0.96, 0.5], None),
    ("min", 2, 0.05, [1.0, 0.97, 0.96, 0.5], 2),  # 0.97 and 0.96 are not better by more than 0.05
    ("min", 1, 0.25, [1.0, 0.75], 1),  # exactly min_delta better is not an improvement
    ("min", 1, 0.25, [1.0, 0.7], None),
    ("max", 2, 0.0, [0.5, 0.6, 0.6, 0.55], 3),  # equal is not better
    ("max", 3, 0.1, [0.5, 0.55, 0.65, 0.7, 0.74, 0.72], 5),
    ("min", 0, 0.0, [1.0, 0.9, 0.95], 2),  # patience 0: the first non-improvement stops
])
def test_early_stopping_scripted(mode, patience, min_delta, values, expected):
    assert stop_index(EarlyStopping(mode, patience, min_delta), values) == expected


def test_early_stopping_matches_lightning_rule():
    """Random sequences on a float32-exact grid give the same stop epoch as Lightning's callback."""
    from lightning.pytorch.callbacks import EarlyStopping as LightningEarlyStopping

    gen = torch.Generator().manual_seed(0)
    for trial in range(200):
        mode = ("min", "max")[trial % 2]
        patience, min_delta = int(torch.randint(0, 4, (1,), generator=gen)), int(torch.randint(0, 3, (1,), generator=gen)) / 64
        values = (torch.randint(0, 64, (12,), generator=gen) / 64).tolist()
        theirs = LightningEarlyStopping(monitor="m", mode=mode, patience=patience, min_delta=min_delta)
        expected = next((i for i, v in enumerate(values) if theirs._evaluate_stopping_criteria(torch.tensor(v))[0]), None)
        assert stop_index(EarlyStopping(mode, patience, min_delta), values) == expected, (mode, patience, min_delta, values)


def test_early_stopping_state_round_trip():
    values = [1.0, 0.9, 0.95, 0.97, 0.99]
    first = EarlyStopping("min", 3)
    for v in values[:3]:
        first.step(v)
    second = EarlyStopping("min", 3)
    second.load_state_dict(first.state_dict())
    assert [second.step(v) for v in values[3:]] == [False, True]


def files(directory) -> set[str]:
    return {p.name for p in directory.iterdir()}


def minimal_state(epoch: int) -> dict:
    """The keys load_checkpoint requires of a plain-side checkpoint, mostly empty."""
    return {"model": {}, "optimizer": {}, "scheduler": {}, "epoch": epoch, "global_step": 0, "early_stopping": {}, "history": [],
            "step_losses": torch.zeros(0), "rng": {}, "config": {}}


def test_top_k_keeps_the_best_files(tmp_path):
    saver = CheckpointSaver(tmp_path, "val_loss", "min", top_k=2)
    for epoch, score in enumerate([0.5, 0.4, 0.6, 0.3, 0.4]):  # epoch 4 ties the worst kept: not saved
        saver.save(minimal_state(epoch), epoch, score)
    assert files(tmp_path) == {"epoch=3-val_loss=0.3000.pt", "epoch=1-val_loss=0.4000.pt", "last.pt"}
    assert saver.best_path == tmp_path / "epoch=3-val_loss=0.3000.pt"
    last = load_checkpoint(tmp_path / "last.pt")
    assert last["epoch"] == 4 and last["format"] == FORMAT
    assert last["checkpoints"]["best"] == [[0.3, "epoch=3-val_loss=0.3000.pt"], [0.4, "epoch=1-val_loss=0.4000.pt"]]


def test_top_k_max_mode_and_zero(tmp_path):
    saver = CheckpointSaver(tmp_path / "max", "val_acc", "max", top_k=1)
    for epoch, score in enumerate([0.25, 0.5, 0.5, 0.125]):
        saver.save(minimal_state(epoch), epoch, score)
    assert files(tmp_path / "max") == {"epoch=1-val_acc=0.5000.pt", "last.pt"}
    none = CheckpointSaver(tmp_path / "none", "val_loss", "min", top_k=0)
    none.save({"epoch": 0}, 0, 1.0)
    assert files(tmp_path / "none") == {"last.pt"} and none.best_path is None


@pytest.mark.parametrize("fail", ["os.replace", "os.fsync"])
def test_atomic_save_survives_a_crash_mid_write(tmp_path, monkeypatch, fail):
    saver = CheckpointSaver(tmp_path, "val_loss", "min", top_k=1)
    saver.save({**minimal_state(0), "weights": torch.zeros(3)}, 0, 1.0)
    before = (tmp_path / "last.pt").read_bytes()

    def crash(*args, **kwargs):
        raise OSError("simulated crash")

    monkeypatch.setattr(fail, crash)
    with pytest.raises(OSError, match="simulated crash"):
        saver.save({**minimal_state(1), "weights": torch.ones(3)}, 1, 2.0)  # not top-1: only last.pt is written
    assert (tmp_path / "last.pt").read_bytes() == before
    assert files(tmp_path) == {"epoch=0-val_loss=1.0000.pt", "last.pt"}  # no temp file left behind
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 0


def test_rng_state_round_trip():
    import random

    import numpy as np
    state = rng_state()
    draws = random.random(), np.random.rand(), torch.rand(1).item()
    set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == draws


def write_bad_checkpoints(directory) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FORMAT, "model": {"w": torch.zeros(1000)}}, directory / "good.pt")
    data = (directory / "good.pt").read_bytes()
    paths = {"truncated": directory / "truncated.pt", "garbage": directory / "garbage.pt",
             "lightning": directory / "epoch=0-step=5.ckpt", "not_a_dict": directory / "tensor.pt"}
    paths["truncated"].write_bytes(data[: len(data) // 2])
    paths["garbage"].write_bytes(os.urandom(4096))
    torch.save({"state_dict": {}, "pytorch-lightning_version": "2.6.6", "epoch": 0}, paths["lightning"])
    torch.save(torch.zeros(3), paths["not_a_dict"])
    return paths


@pytest.mark.parametrize("kind", ["truncated", "garbage", "lightning", "not_a_dict"])
def test_unusable_checkpoint_is_a_clear_error(tmp_path, kind):
    path = write_bad_checkpoints(tmp_path)[kind]
    with pytest.raises(TrainingError, match="not a (readable|plain_pytorch) checkpoint") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_resume_from_corrupt_last_overwrites_nothing(tiny_cfg):
    ckpt_dir = tiny_cfg.checkpoint_dir
    last = ckpt_dir / "last.pt"
    write_bad_checkpoints(ckpt_dir)["truncated"].rename(last)
    before = {p.name: p.read_bytes() for p in ckpt_dir.iterdir()}
    with pytest.raises(TrainingError, match="not a readable checkpoint") as err:
        train.fit(tiny_cfg.replace(resume="last"))
    assert str(last) in str(err.value)
    assert {p.name: p.read_bytes() for p in ckpt_dir.iterdir()} == before
    assert files(ckpt_dir.parent) == {"checkpoints"}  # no TensorBoard folder, no metrics


def test_resume_last_without_checkpoint_names_the_path(tiny_cfg):
    with pytest.raises(TrainingError, match="no checkpoint at") as err:
        train.fit(tiny_cfg.replace(resume="last"))
    assert str(tiny_cfg.checkpoint_dir / "last.pt") in str(err.value)


def run_main(monkeypatch, capsys, *flags: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["plain_pytorch.train", *flags])
    with pytest.raises(SystemExit) as exit_info:
        train.main()
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize(("flags", "named"), [
    (["--epochs", "0"], "--epochs"),
    (["--precision", "fp8"], "--precision"),
    (["--val-fraction", "0.6", "--test-fraction", "0.5"], "--val-fraction"),
    (["--no-such-flag"], "--no-such-flag"),
])
def test_bad_flag_exits_2_naming_it(monkeypatch, capsys, tmp_path, flags, named):
    code, err = run_main(monkeypatch, capsys, *flags, "--output-dir", str(tmp_path / "run"))
    assert code == 2 and named in err
    assert not (tmp_path / "run").exists()


def test_ddp_without_torchrun_names_the_command(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("RANK", raising=False)
    code, err = run_main(monkeypatch, capsys, "--devices", "2", "--strategy", "ddp", "--accelerator", "cpu",
                         "--output-dir", str(tmp_path / "run"))
    assert code == 1 and "torchrun --nproc_per_node 2 -m plain_pytorch.train" in err
    assert not (tmp_path / "run").exists()


def test_train_state_resumes_after_the_epoch_it_saved(tmp_path):
    saver = CheckpointSaver(tmp_path, "val_loss", "min", top_k=1)
    state = TrainState(EarlyStopping("min", patience=3), saver, epoch=2, global_step=12,
                       history=[{"epoch": 0}, {"epoch": 1}, {"epoch": 2}], step_losses=[0.5, 0.25])
    state.stopper.step(0.4)
    saver.save({**minimal_state(2), **state.state_dict()}, 2, 0.4)
    resumed = TrainState(EarlyStopping("min", patience=3), CheckpointSaver(tmp_path, "val_loss", "min", top_k=1))
    resumed.load_state_dict(load_checkpoint(tmp_path / "last.pt"))
    assert (resumed.epoch, resumed.global_step) == (3, 12)  # epoch 2 is complete: the next is 3
    assert (resumed.history, resumed.step_losses) == (state.history, [0.5, 0.25])
    assert resumed.stopper.state_dict() == state.stopper.state_dict()
    assert resumed.saver.best_path == saver.best_path is not None
