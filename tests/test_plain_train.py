"""plain_pytorch end to end: outputs, exact resume after SIGKILL, NaN stop, evaluate CLI, 2-process DDP."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY_FLAGS, tiny

from plain_pytorch import evaluate as evaluate_cli
from plain_pytorch import loop, train
from plain_pytorch.checkpoint import load_checkpoint
from shared.config import TrainConfig
from shared.model import build_model
from shared.runtime import TrainingError, state_digest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
REQUIRED_KEYS = {"implementation", "config", "device", "world_size", "num_parameters", "epochs_run", "best_epoch",
                 "best_score", "stop_reason", "fit_seconds", "first_step_unix", "history", "step_losses",
                 "steps_per_epoch", "initial_weights_sha256", "final_weights_sha256", "peak_cuda_memory_bytes", "test"}



def weights_digest(path: Path) -> str:
    ckpt = load_checkpoint(path)
    model = build_model(TrainConfig(**{**ckpt["config"], "resume": None}))
    model.load_state_dict(ckpt["model"])
    return state_digest(model)


def run_module(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[TrainConfig, dict]:
    cfg = tiny(tmp_path_factory.mktemp("plain") / "run", epochs=3, save_top_k=2, log_every_n_steps=2, augment=True)
    train.fit(cfg)
    return cfg, json.loads((Path(cfg.output_dir) / "metrics.json").read_text())


def test_run_writes_metrics_plots_tensorboard_and_checkpoints(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg, metrics = trained
    out = Path(cfg.output_dir)
    assert REQUIRED_KEYS <= metrics.keys() and metrics["implementation"] == "plain_pytorch"
    assert metrics["epochs_run"] == len(metrics["history"]) == 3
    assert len(metrics["step_losses"]) == 3 * metrics["steps_per_epoch"] == 3 * math.ceil(75 / 16)
    assert metrics["test"]["accuracy"] is not None and (out / "confusion_matrix.png").stat().st_size > 0
    assert (out / "sample_predictions.png").stat().st_size > 0
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert {"train_loss_step", "train_loss", "train_acc", "val_loss", "val_acc", "lr-Adam"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("val_loss")] == [4, 9, 14]  # each epoch's last step, as Lightning logs
    # top-2 by val_loss plus last; the best is the one tested and reported
    ranked = sorted(metrics["history"], key=lambda e: e["val_loss"])[:2]
    expected = {f"epoch={e['epoch']}-val_loss={e['val_loss']:.4f}.pt" for e in ranked} | {"last.pt"}
    assert {p.name for p in cfg.checkpoint_dir.iterdir()} == expected
    assert metrics["best_epoch"] == ranked[0]["epoch"] and metrics["best_score"] == ranked[0]["val_loss"]
    last = load_checkpoint(cfg.checkpoint_dir / "last.pt")
    assert last["epoch"] == 2 and last["global_step"] == len(metrics["step_losses"])
    assert weights_digest(cfg.checkpoint_dir / "last.pt") == metrics["final_weights_sha256"]
    assert metrics["initial_weights_sha256"] != metrics["final_weights_sha256"]


def test_resume_with_another_experiment_is_refused(trained, tmp_path):
    cfg, _ = trained
    with pytest.raises(TrainingError, match="base_channels=8 \\(now 16\\)") as err:
        train.fit(cfg.replace(base_channels=16, output_dir=str(tmp_path), resume=str(cfg.checkpoint_dir / "last.pt")))
    assert str(cfg.checkpoint_dir / "last.pt") in str(err.value)


def test_kill_and_resume_equals_uninterrupted(tmp_path):
    # a cosine schedule: the scheduler's state must come back too (a constant lr would hide a reset)
    flags = [*TINY_FLAGS, "--epochs", "4", "--augment", "--lr-schedule", "cosine"]
    reference = train.fit(tiny(tmp_path / "reference", epochs=4, augment=True, lr_schedule="cosine"))
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "plain_pytorch.train", *flags, "--output-dir", str(out)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = out / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 180
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert load_checkpoint(last)["epoch"] < reference.epochs_run - 1 and not (out / "metrics.json").exists()

    resumed = run_module("plain_pytorch.train", *flags, "--output-dir", str(out), "--resume", "last")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at epoch" in resumed.stdout and "test: accuracy" in resumed.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["final_weights_sha256"] == reference.final_weights_sha256
    assert metrics["test"] == json.loads(json.dumps(reference.test))
    assert metrics["step_losses"] == reference.step_losses
    drop_time = [{k: v for k, v in e.items() if k not in ("train_seconds", "train_cpu_seconds")} for e in metrics["history"]]
    assert drop_time == [{k: v for k, v in e.items() if k not in ("train_seconds", "train_cpu_seconds")} for e in reference.history]
    assert (metrics["stop_reason"], metrics["best_epoch"]) == (reference.stop_reason, reference.best_epoch)


def test_non_finite_loss_stops_and_keeps_checkpoints(tiny_cfg, monkeypatch):
    original, calls = loop.train_one_epoch, []

    def poisoned(parts, *args, **kwargs):
        if len(calls) == 1:  # epoch 1: NaN weights make every loss NaN
            with torch.no_grad():
                next(parts.net.parameters()).fill_(float("nan"))
        calls.append(1)
        return original(parts, *args, **kwargs)

    monkeypatch.setattr(loop, "train_one_epoch", poisoned)
    with pytest.raises(TrainingError, match="non-finite training loss in epoch 1.*checkpoints so far are kept"):
        train.fit(tiny_cfg.replace(epochs=3))
    last = load_checkpoint(tiny_cfg.checkpoint_dir / "last.pt")
    assert last["epoch"] == 0 and all(torch.isfinite(t).all() for t in last["model"].values())
    assert {p.name for p in tiny_cfg.checkpoint_dir.iterdir()} == {p.name for p in tiny_cfg.checkpoint_dir.glob("epoch=0-*")} | {"last.pt"}
    assert not (Path(tiny_cfg.output_dir) / "metrics.json").exists()


@pytest.mark.parametrize("bogus", ["text", "lightning"])
def test_evaluate_cli_rejects_a_bogus_checkpoint(tmp_path, call_main, bogus):
    path = tmp_path / ("notes.pt" if bogus == "text" else "epoch=1-step=10.ckpt")
    if bogus == "text":
        path.write_text("not a checkpoint")
    else:
        torch.save({"state_dict": build_model(tiny(tmp_path)).state_dict(), "pytorch-lightning_version": "2.6.6"}, path)
    code, _, err = call_main(evaluate_cli.main, "--checkpoint", str(path), "--output-dir", str(tmp_path / "out"))
    assert code == 1 and str(path) in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_evaluate_cli_rejects_weights_of_another_shape(trained, tmp_path, call_main):
    cfg, _ = trained
    ckpt = load_checkpoint(cfg.checkpoint_dir / "last.pt")
    ckpt["config"]["base_channels"] = 16
    torch.save(ckpt, tmp_path / "mislabelled.pt")
    code, _, err = call_main(evaluate_cli.main, "--checkpoint", str(tmp_path / "mislabelled.pt"), "--output-dir", str(tmp_path / "out"))
    assert code == 1 and "weights do not fit WaferCNN(base_channels=16)" in err and len(err.strip().splitlines()) == 1


def test_ddp_two_processes_gloo(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "plain_pytorch.train", *TINY_FLAGS, "--epochs", "2", "--output-dir", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # replica_digest all-gathers every rank's weight digest and fails the run if they differ
    assert "weights identical on all 2 ranks" in proc.stdout
    assert proc.stdout.count("data: synthetic") == 1 and proc.stdout.count("test: accuracy") == 1  # rank 0 only
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps_per_epoch"] == math.ceil(math.ceil(75 / 2) / 16)
    assert len(metrics["step_losses"]) == 2 * metrics["steps_per_epoch"]
    assert weights_digest(out / "checkpoints" / "last.pt") == metrics["final_weights_sha256"]
    assert metrics["final_weights_sha256"].startswith(proc.stdout.split("sha256 ")[1][:12])
    assert len(list((out / "tensorboard").iterdir())) == 1
