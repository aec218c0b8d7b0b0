"""lightning_impl through its command lines: exact resume after SIGKILL, 2-process CPU DDP, evaluate."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY_FLAGS

from lightning_impl import train
from shared.cli import parse_config

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def comparable(result) -> dict:
    """What an interrupted-and-resumed run must reproduce exactly (timings aside)."""
    history = [{k: v for k, v in entry.items() if k not in ("train_seconds", "train_cpu_seconds")} for entry in result.history]
    return {"history": history, "step_losses": result.step_losses, "final": result.final_weights_sha256,
            "test": result.test, "best": (result.best_epoch, result.best_score), "epochs": result.epochs_run}


def test_kill_and_resume_equals_uninterrupted(tmp_path):
    # a cosine schedule: the scheduler's state must come back too (a constant lr would hide a reset)
    flags = [*TINY_FLAGS, "--epochs", "4", "--lr-schedule", "cosine", "--output-dir", str(tmp_path / "killed")]
    cfg = parse_config("test", "", flags)
    last = cfg.checkpoint_dir / "last.ckpt"
    with open(tmp_path / "killed.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "lightning_impl.train", *flags], cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        # checkpoints are written to a temp file and renamed, so a file that exists is complete
        while proc.poll() is None and time.monotonic() < deadline:
            if last.is_file() and torch.load(last, weights_only=True)["epoch"] >= 1:
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"run ended before the kill: {(tmp_path / 'killed.log').read_text()[-2000:]}"
    finally:
        proc.kill()
        proc.wait()
    killed_at = torch.load(last, weights_only=True)["epoch"]
    assert 1 <= killed_at < 3 and not (tmp_path / "killed" / "metrics.json").exists()
    resumed = train.fit(cfg.replace(resume="last"))
    uninterrupted = train.fit(cfg.replace(output_dir=str(tmp_path / "whole")))
    assert comparable(resumed) == comparable(uninterrupted)
    assert [entry["epoch"] for entry in resumed.history] == [0, 1, 2, 3]
    lrs = [entry["lr"] for entry in resumed.history]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < 1e-9 < lrs[0]  # after warm-up: decays to 0 at the end


def test_ddp_two_cpu_processes_write_one_set_of_outputs(tmp_path):
    out = tmp_path / "ddp"
    # the Trainer launches the second process itself, by re-running this command line
    proc = subprocess.run([sys.executable, "-m", "lightning_impl.train", *TINY_FLAGS, "--epochs", "2",
                           "--devices", "2", "--strategy", "ddp", "--output-dir", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("data: synthetic") == 1 and proc.stdout.count("test: accuracy") == 1  # rank 0 only
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps_per_epoch"] == 3  # 38 of the 75 maps per rank, batch 16
    assert len(metrics["step_losses"]) == 6 and [entry["epoch"] for entry in metrics["history"]] == [0, 1]
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "confusion_matrix.png", "metrics.json",
                                                     "sample_predictions.png", "tensorboard"]
    last = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 1 and last["global_step"] == 6
    assert len({p.name.split(".")[-2] for p in (out / "tensorboard").glob("events.*")}) == 1  # one writer process
