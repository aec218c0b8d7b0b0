"""DDP on both sides: 2 CPU processes with half the batch each learn what 1 process with the whole batch learns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--samples-per-class", "40", "--image-size", "32", "--base-channels", "8", "--epochs", "4",
         "--accelerator", "cpu", "--seed", "3", "--barebones"]


def train(side: str, out: Path, processes: int, batch: int) -> dict:
    module = {"plain": "plain_pytorch.train", "lightning": "lightning_impl.train"}[side]
    command = [sys.executable, "-m", module]
    if processes > 1:
        command = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                    "-m", module] if side == "plain" else [*command, "--devices", str(processes), "--strategy", "ddp"])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*command, *FLAGS, "--batch-size", str(batch), "--output-dir", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("side", ["plain", "lightning"])
def test_two_processes_match_one_process_with_the_same_global_batch(side: str, tmp_path: Path) -> None:
    single = train(side, tmp_path / "one", processes=1, batch=16)
    ddp = train(side, tmp_path / "two", processes=2, batch=8)
    # the global batch is batch_size x processes: the same number of optimizer steps per epoch
    assert ddp["world_size"] == 2 and ddp["steps_per_epoch"] == single["steps_per_epoch"]
    # same samples per global step; BatchNorm statistics per rank and dropout streams differ, so close, not equal
    a, b = single["test"]["accuracy"], ddp["test"]["accuracy"]
    assert a > 0.3 and b > 0.3, (a, b)
    assert abs(a - b) <= 0.2, (a, b)
    assert ddp["initial_weights_sha256"] == single["initial_weights_sha256"]
