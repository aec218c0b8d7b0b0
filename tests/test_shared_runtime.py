"""Atomic writes, device choice, seeding."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

import shared.runtime as runtime
from shared.runtime import atomic_torch_save, atomic_write_bytes, atomic_write_text, epoch_seed, resolve_device, seed_everything


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_atomic_write_creates_folders_and_replaces(tmp_path):
    target = tmp_path / "a" / "b" / "metrics.json"
    atomic_write_text(target, "old")
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert leftovers(target.parent) == []


def test_atomic_write_gives_the_usual_file_mode(tmp_path):
    """mkstemp makes 0600 files; metrics, plots and caches should be as readable as open() would make them."""
    target = tmp_path / "m.json"
    atomic_write_text(target, "{}")
    assert target.stat().st_mode & 0o777 == 0o666 & ~current_umask()


def test_failed_replace_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "last.ckpt"
    target.write_bytes(b"old checkpoint")

    def broken_replace(src, dst):
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(runtime.os, "replace", broken_replace)
    with pytest.raises(OSError, match="simulated crash"):
        atomic_write_bytes(target, b"new checkpoint")
    assert target.read_bytes() == b"old checkpoint"
    assert leftovers(tmp_path) == []


def test_write_failing_midway_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "last.ckpt"
    target.write_bytes(b"old checkpoint")
    real_fdopen = os.fdopen
    written = []

    class HalfWriter:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            self.fh.write(data[: len(data) // 2])
            self.fh.flush()
            written.append(len(data) // 2)
            raise OSError("No space left on device")

    monkeypatch.setattr(runtime.os, "fdopen", lambda fd, mode: HalfWriter(real_fdopen(fd, mode)))
    with pytest.raises(OSError, match="No space left"):
        atomic_write_bytes(target, b"x" * 1000)
    assert written == [500]  # the temp file really was half-written
    assert target.read_bytes() == b"old checkpoint"
    assert leftovers(tmp_path) == []


def test_atomic_torch_save_round_trip(tmp_path):
    state = {"epoch": 3, "w": torch.arange(5.0)}
    atomic_torch_save(state, tmp_path / "c.ckpt")
    loaded = torch.load(tmp_path / "c.ckpt", weights_only=True)
    assert loaded["epoch"] == 3 and torch.equal(loaded["w"], state["w"])


def test_gpu_without_cuda_is_a_value_error(tiny_cfg, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="gpu"):
        resolve_device(tiny_cfg.replace(accelerator="gpu"))
    assert resolve_device(tiny_cfg.replace(accelerator="auto")) == torch.device("cpu")
    assert resolve_device(tiny_cfg.replace(accelerator="cpu")) == torch.device("cpu")


def test_auto_picks_cuda_when_present(tiny_cfg, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device(tiny_cfg.replace(accelerator="auto")).type == "cuda"
    assert resolve_device(tiny_cfg.replace(accelerator="cpu")).type == "cpu"


def test_seed_everything_repeats_every_generator():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    seed_everything(5)
    first = draw()
    seed_everything(5)
    assert draw() == first
    seed_everything(6)
    assert draw() != first


def test_epoch_seed_differs_per_epoch_and_seed(tiny_cfg):
    seeds = {epoch_seed(tiny_cfg.replace(seed=s), e) for s in range(3) for e in range(30)}
    assert len(seeds) == 90


def test_claiming_a_folder_removes_only_a_killed_writers_temp_files(tmp_path, capsys):
    from conftest import tiny

    from shared.outputs import claim_output_dir

    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    atomic_write_bytes(ckpts / "last.pt", b"good")
    dead = [ckpts / ".epoch=1-val_loss=1.6243.pt.nywk9spq.tmp", tmp_path / ".metrics.json.a1b2_c3d.tmp"]
    kept = [tmp_path / "notes.tmp", tmp_path / ".hidden.tmp", tmp_path / ".draft.abcdefgh.tmp", ckpts / "last.pt"]
    for f in dead + kept[:3]:
        f.write_bytes(b"half")
    with claim_output_dir(tiny(tmp_path, resume="last")):
        assert not any(f.exists() for f in dead)
    assert all(f.exists() for f in kept) and (ckpts / "last.pt").read_bytes() == b"good"
    assert "removed 2 half-written file(s)" in capsys.readouterr().out
