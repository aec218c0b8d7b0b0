"""lightning_impl through its command lines: exact resume after SIGKILL, 2-process CPU DDP, evaluate."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lightning_impl import train
from shared.cli import parse_config

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
TINY_FLAGS = ["--samples-per-class", "12", "--image-size", "32", "--batch-size", "16", "--base-channels", "8",
              "--accelerator", "cpu", "--seed", "7"]


def comparable(result) -> dict:
    """What an interrupted-and-resumed run must reproduce exactly (timings aside)."""
    history = [{k: v for k, v in entry.items() if k != "train_seconds"} for entry in result.history]
    return {"history": history, "step_losses": result.step_losses, "final": result.final_weights_sha256,
            "test": result.test, "best": (result.best_epoch, result.best_score), "epochs": result.epochs_run}


def test_kill_and_resume_equals_uninterrupted(tmp_path):
    flags = [*TINY_FLAGS, "--epochs", "4", "--output-dir", str(tmp_path / "killed")]
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
