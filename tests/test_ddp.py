"""DDP on both sides: 2 CPU processes (on one node or on two) against 1 process with the same global batch."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = {"plain": "plain_pytorch.train", "lightning": "lightning_impl.train"}
FLAGS = ["--samples-per-class", "40", "--image-size", "32", "--base-channels", "8", "--epochs", "4",
         "--accelerator", "cpu", "--seed", "3", "--barebones"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # the ranks share the cores


def command(side: str, processes: int) -> list[str]:
    """One process, or DDP on one node: torchrun for the plain side, the Trainer's launcher for Lightning."""
    module = [sys.executable, "-m", MODULES[side]]
    if processes == 1:
        return module
    if side == "plain":
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                "-m", MODULES[side]]
    return [*module, "--devices", str(processes), "--strategy", "ddp"]


def train(side: str, out: Path, processes: int, batch: int, flags: list[str] = FLAGS) -> dict:
    done = subprocess.run([*command(side, processes), *flags, "--batch-size", str(batch), "--output-dir", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def node_command(side: str, node_rank: int, port: int) -> tuple[list[str], dict]:
    """What the README tells a user to start on each of two nodes (here both on localhost), and its environment."""
    if side == "plain":
        return ([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
                 "--node_rank", str(node_rank), "--rdzv-backend", "c10d", "--rdzv-endpoint", f"localhost:{port}",
                 "--rdzv-id", "wafer-bench-test", "-m", MODULES[side]], ENV)
    return ([sys.executable, "-m", MODULES[side], "--num-nodes", "2", "--devices", "1", "--strategy", "ddp"],
            {**ENV, "MASTER_ADDR": "localhost", "MASTER_PORT": str(port), "NODE_RANK": str(node_rank),
             "WORLD_SIZE": "2"})


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


@pytest.mark.slow
def test_under_ddp_both_sides_draw_the_balanced_samplers_shards_alike(tmp_path: Path) -> None:
    # Lightning keeps the shared sampler (use_distributed_sampler=False) and calls its set_epoch: had it put
    # its own DistributedSampler in, its batches, and so its losses, would differ from torchrun's plain loop
    flags = [*FLAGS, "--sampler", "balanced", "--no-balance-classes"]
    plain, lightning = (train(side, tmp_path / side, processes=2, batch=8, flags=flags) for side in ("plain", "lightning"))
    assert plain["world_size"] == lightning["world_size"] == 2
    assert plain["steps_per_epoch"] == lightning["steps_per_epoch"] > 0
    assert plain["step_losses"] == lightning["step_losses"]
    assert plain["final_weights_sha256"] == lightning["final_weights_sha256"]


@pytest.mark.slow
@pytest.mark.parametrize("side", ["plain", "lightning"])
def test_two_nodes_train_what_two_processes_on_one_node_train(side: str, tmp_path: Path) -> None:
    """gloo over localhost: node ranks 0 and 1 started separately, one output folder, the 1-node result exactly."""
    flags = [f for f in FLAGS if f != "--barebones"]  # with checkpoints and logs: only global rank 0 writes them
    one_node = train(side, tmp_path / "one-node", processes=2, batch=8, flags=flags)
    out, port = tmp_path / "two-nodes", free_port()
    procs = []
    for node_rank in (0, 1):
        cmd, env = node_command(side, node_rank, port)
        procs.append(subprocess.Popen([*cmd, *flags, "--batch-size", "8", "--output-dir", str(out)], cwd=ROOT, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    logs = [proc.communicate(timeout=300)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], "\n".join(log[-2000:] for log in logs)
    two_nodes = json.loads((out / "metrics.json").read_text())
    assert two_nodes["world_size"] == 2
    # every rank checked that it holds rank 0's weights; the 2-node run is the 1-node run, bit for bit
    assert f"weights identical on all 2 ranks (sha256 {two_nodes['final_weights_sha256'][:12]})" in logs[0]
    assert two_nodes["final_weights_sha256"] == one_node["final_weights_sha256"]
    assert two_nodes["step_losses"] == one_node["step_losses"]

    def files(folder: Path) -> list[str]:  # event file names carry a time stamp and pid: count those
        names = [p.name if "tensorboard" not in p.parts else "tensorboard event file" for p in folder.rglob("*")]
        return sorted(names)

    assert files(out) == files(tmp_path / "one-node")  # one set of outputs, the same files as on one node


@pytest.mark.slow
def test_ctrl_c_under_torchrun_is_one_message_that_keeps_torchrun(tmp_path: Path) -> None:
    """SIGINT to the whole job, as a terminal's Ctrl-C sends it: every worker stops at once, and only rank 0 speaks."""
    out = tmp_path / "run"
    flags = ["--samples-per-class", "12", "--image-size", "32", "--base-channels", "8", "--epochs", "100",
             "--patience", "100", "--accelerator", "cpu", "--no-tensorboard", "--no-progress-bar", "--output-dir", str(out)]
    job = subprocess.Popen([*command("plain", 2), *flags], cwd=ROOT, env=ENV, start_new_session=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (out / "checkpoints" / "last.pt").is_file() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(job.pid, signal.SIGINT)
    _, err = job.communicate(timeout=120)
    messages = [line for line in err.splitlines() if "interrupted; last checkpoint" in line]
    assert len(messages) == 1, err[-3000:]
    assert messages[0].endswith(shlex.join([*command("plain", 2), *flags, "--resume", "last"])), messages[0]
    assert "KeyboardInterrupt" not in err, err[-3000:]  # no worker's traceback (torchrun prints its own)
