"""The experiment contract on both sides: resume, output folders and one-line errors (README's bad-input table)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import importlib
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import SIDES, TINY_FLAGS

from shared.config import TrainConfig
from shared.errors import DataError
from shared.model import WaferCNN
from shared.outputs import LOCK_NAME, claim_output_dir, output_lock

SUFFIX = {"plain_pytorch": "pt", "lightning_impl": "ckpt"}
TINY = [*TINY_FLAGS, "--epochs", "1"]
EXPERIMENT_FIELDS = [f.name for f in dataclasses.fields(TrainConfig) if not f.metadata["resume_safe"]]
# a valid second value per str field
OTHER_STRINGS = {"monitor": "val_acc", "precision": "bf16-mixed", "lr_schedule": "cosine", "sampler": "balanced"}


def train_main(side: str):
    return importlib.import_module(f"{side}.train").main


def evaluate_main(side: str):
    return importlib.import_module(f"{side}.evaluate").main


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under the folder and a digest of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def lswmd_with_a_malformed_map(path: Path, seed: int = 0) -> Path:
    """9 classes x 12 maps, plus one map with a bad die code and one unlabelled row."""
    rng = np.random.default_rng(seed)
    rows = [(rng.integers(0, 3, size=(26, 26)).astype(np.uint8), np.array([[name]]))
            for name in ("Center", "Donut", "Edge-Loc", "Edge-Ring", "Loc", "Near-full", "Random", "Scratch", "none")
            for _ in range(12)]
    rows += [(np.full((26, 26), 7, dtype=np.uint8), np.array([["Loc"]])), (rows[0][0], np.zeros((0, 0)))]
    pd.DataFrame({"waferMap": [r[0] for r in rows], "failureType": [r[1] for r in rows]}).to_pickle(path)
    return path


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WAFER_BENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    return lswmd_with_a_malformed_map(tmp_path_factory.mktemp("data") / "mini.pkl")


@pytest.fixture(scope="module", params=SIDES)
def finished(request, tmp_path_factory, data_file) -> tuple[str, Path, list[str]]:
    """One finished 1-epoch run per side, started in a folder holding a killed run's stale lock file."""
    side, out = request.param, tmp_path_factory.mktemp(request.param) / "run"
    out.mkdir()
    (out / LOCK_NAME).write_text("999999")  # no process holds it: it must not block
    flags = [*TINY, "--data", str(data_file), "--samples-per-class", "0", "--output-dir", str(out)]
    train_main(side)(flags)
    return side, out, flags


@pytest.mark.slow
def test_finished_run_records_skips_and_leaves_no_lock(finished):
    side, out, _ = finished
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data_skipped"] == {"unlabelled": 1, "empty_or_not_2d": 0, "bad_codes": 1}
    assert not (out / LOCK_NAME).exists() and (out / "checkpoints" / f"last.{SUFFIX[side]}").is_file()


def other_value(name: str, stored: dict, spare_file: Path) -> list[str]:
    """Flags that give `name` another valid value than the stored run's."""
    value, flag = stored[name], "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return [flag if not value else "--no-" + flag[2:]]
    if name == "data":
        return [flag, str(spare_file)]
    if name == "class_weight_power":  # valid only with class weights (the refusal then names both fields)
        return ["--class-weights", flag, str(value + 0.05)]
    if name == "sampler_power":  # in [0, 1] and valid only with the balanced sampler
        return ["--sampler", "balanced", flag, str(value - 0.5)]
    if isinstance(value, str):
        return [flag, OTHER_STRINGS[name]]  # a new str field needs its entry here
    return [flag, str(value + 1 if isinstance(value, int) else value + 0.05)]


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPERIMENT_FIELDS)
def test_resume_with_another_experiment_is_refused(finished, name, call_main, tmp_path):
    side, out, flags = finished
    stored = json.loads((out / "metrics.json").read_text())["config"]
    before = snapshot(out)
    spare = tmp_path / "other.pkl"
    spare.write_bytes(b"x")
    code, _, err = call_main(train_main(side), *flags, "--resume", "last", "--epochs", "2",
                             *other_value(name, stored, spare))
    assert code == 1 and f"{name}=" in one_line(err) and "different configuration" in err
    assert snapshot(out) == before


@pytest.mark.slow
def test_resume_may_change_how_long_where_and_how_verbose(finished, call_main, tmp_path):
    side, out, flags = finished
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    code, _, err = call_main(train_main(side), *flags, "--output-dir", str(copy), "--resume", "last",
                             "--epochs", "2", "--patience", "9", "--log-every-n-steps", "3")
    assert code == 0, err
    assert json.loads((copy / "metrics.json").read_text())["epochs_run"] == 2


@pytest.mark.slow
def test_a_bare_resume_continues_the_stored_experiment(finished, call_main, tmp_path):
    side, out, _ = finished
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    before = snapshot(copy)
    code, _, err = call_main(train_main(side), "--resume", "last", "--output-dir", str(copy), "--lr", "0.5")
    assert code == 1 and "lr=0.001 (now 0.5)" in one_line(err)  # a flag given must match the experiment
    assert snapshot(copy) == before
    code, _, err = call_main(train_main(side), "--resume", "last", "--output-dir", str(copy), "--epochs", "2")
    assert code == 0, err
    stored, resumed = (json.loads((folder / "metrics.json").read_text())["config"] for folder in (out, copy))
    assert resumed == {**stored, "epochs": 2, "output_dir": str(copy), "resume": "last"}


@pytest.mark.slow
def test_a_resume_of_a_finished_run_is_refused_unless_its_test_was_cut(finished, call_main, tmp_path):
    side, out, flags = finished
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    before = snapshot(copy)
    code, _, err = call_main(train_main(side), *flags, "--output-dir", str(copy), "--resume", "last")
    assert code == 1 and one_line(err).endswith(
        f"nothing to resume: {copy / 'checkpoints' / ('last.' + SUFFIX[side])} has run all 1 epochs and "
        f"{copy / 'metrics.json'} holds the finished run; give --epochs 2 or more to train on, or score a "
        f"checkpoint with evaluate")
    assert snapshot(copy) == before  # the record keeps its fit time
    (copy / "metrics.json").unlink()  # killed during the test: the resume tests and writes the record
    code, _, err = call_main(train_main(side), *flags, "--output-dir", str(copy), "--resume", "last")
    assert code == 0, err
    assert json.loads((copy / "metrics.json").read_text())["epochs_run"] == 1


def with_world_size(path: Path, side: str, world_size: int) -> None:
    """Rewrite a checkpoint as if its run had had `world_size` processes."""
    ckpt = torch.load(path, weights_only=False)
    ckpt["experiment" if side == "plain_pytorch" else "hyper_parameters"]["world_size"] = world_size
    torch.save(ckpt, path)


@pytest.mark.slow
def test_resume_under_another_world_size_is_refused(finished, call_main, tmp_path):
    side, out, flags = finished
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    with_world_size(copy / "checkpoints" / f"last.{SUFFIX[side]}", side, 2)
    before = snapshot(copy)
    code, _, err = call_main(train_main(side), "--resume", "last", "--output-dir", str(copy), "--epochs", "2")
    assert code == 1 and "world_size=2 (now 1)" in one_line(err)
    assert snapshot(copy) == before


@pytest.mark.slow
@pytest.mark.parametrize("side", SIDES)
def test_data_is_its_content_not_its_path(side, data_file, call_main, tmp_path, monkeypatch):
    """Moved data evaluates and resumes; a deleted --resume file breaks nothing; other maps at the path are refused."""
    first, second, third = (tmp_path / name for name in ("first", "second", "third"))
    for folder in (first, second, third):
        folder.mkdir()
    shutil.copy(data_file, first / "mini.pkl")
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    code, _, err = call_main(train_main(side), *TINY, "--data", str(first / "mini.pkl"), "--samples-per-class", "0",
                             "--output-dir", str(run_a))
    assert code == 0, err
    shutil.move(first / "mini.pkl", second / "mini.pkl")
    monkeypatch.chdir(second)
    a_last = run_a / "checkpoints" / f"last.{SUFFIX[side]}"
    code, _, err = call_main(evaluate_main(side), "--checkpoint", str(a_last), "--data", "mini.pkl",
                             "--output-dir", str(tmp_path / "eval_a"), "--accelerator", "cpu")
    assert code == 0, err
    code, _, err = call_main(train_main(side), "--resume", str(a_last), "--output-dir", str(run_b), "--epochs", "2",
                             "--data", "mini.pkl")  # the same maps by a relative path
    assert code == 0, err
    code, _, err = call_main(train_main(side), "--resume", "last", "--output-dir", str(run_a), "--epochs", "2")
    assert code == 2 and "(the value its checkpoint was trained with; give --data)" in err.strip().splitlines()[-1]
    a_last.unlink()  # run b's checkpoints name it as their --resume
    shutil.move(second / "mini.pkl", third / "mini.pkl")
    b_last = run_b / "checkpoints" / f"last.{SUFFIX[side]}"
    code, _, err = call_main(evaluate_main(side), "--checkpoint", str(b_last), "--data", str(third / "mini.pkl"),
                             "--output-dir", str(tmp_path / "eval"), "--accelerator", "cpu")
    assert code == 0, err
    code, _, err = call_main(evaluate_main(side), "--checkpoint", str(b_last), "--output-dir", str(tmp_path / "gone"),
                             "--accelerator", "cpu")  # no --data: the file it was trained on, which is not there
    assert code == 2 and err.strip().splitlines()[-1].endswith(
        "argument --data: the checkpoint was trained on mini.pkl (a path relative to where training ran), which is "
        "not a file here: give --data with its path now (or another file)")
    assert not (tmp_path / "gone" / "metrics.json").exists()
    lswmd_with_a_malformed_map(second / "mini.pkl", seed=1)  # other maps where run b's data was
    for split in ([], ["--split", "all"]):  # without --data the file is its content, for every split
        code, _, err = call_main(evaluate_main(side), "--checkpoint", str(b_last), "--output-dir",
                                 str(tmp_path / "changed"), "--accelerator", "cpu", *split)
        assert code == 1 and one_line(err).endswith(f"{b_last} was trained on mini.pkl, whose content has changed "
                                                    f"since: give --data with the file it was trained on, or --data "
                                                    f"FILE to score every map of another file")
    assert not (tmp_path / "changed" / "metrics.json").exists()
    before = snapshot(run_b)
    code, _, err = call_main(train_main(side), "--resume", "last", "--output-dir", str(run_b), "--epochs", "3")
    assert code == 1 and "data='mini.pkl' sha256 " in one_line(err)
    assert snapshot(run_b) == before


@pytest.mark.slow
@pytest.mark.parametrize("side", SIDES)
def test_with_a_schedule_resume_may_not_change_the_epochs(side, call_main, tmp_path):
    flags = [*TINY, "--epochs", "2", "--lr-schedule", "cosine", "--output-dir", str(tmp_path / "run")]
    assert call_main(train_main(side), *flags)[0] == 0
    before = snapshot(tmp_path / "run")
    code, _, err = call_main(train_main(side), *flags, "--epochs", "3", "--resume", "last")
    assert code == 1 and "epochs=2 (now 3)" in one_line(err)
    assert snapshot(tmp_path / "run") == before


@pytest.mark.slow
def test_second_run_into_a_finished_folder_is_refused(finished, call_main):
    side, out, flags = finished
    before = snapshot(out)
    code, _, err = call_main(train_main(side), *flags)
    line = one_line(err)
    assert code == 1 and "holds another run's outputs" in line and "--resume last" in line and "--overwrite" in line
    assert snapshot(out) == before


@pytest.mark.slow
def test_overwrite_clears_the_earlier_run_and_says_so(finished, call_main, tmp_path):
    side, out, flags = finished
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "checkpoints" / f"epoch=7-val_loss=0.1234.{SUFFIX[side]}").write_bytes(b"an older run's")
    (copy / "notes.txt").write_text("not a run output")
    code, stdout, err = call_main(train_main(side), *flags, "--output-dir", str(copy), "--overwrite")
    assert code == 0, err
    assert f"--overwrite: removed metrics.json, confusion_matrix.png, sample_predictions.png, checkpoints, " \
           f"tensorboard from {copy}" in stdout
    assert not list((copy / "checkpoints").glob("epoch=7-*")) and (copy / "notes.txt").is_file()
    assert len({p.name.split(".")[-2] for p in (copy / "tensorboard").rglob("events.*")}) == 1  # one writer pid


@pytest.mark.parametrize("side", SIDES)
def test_a_run_into_a_folder_in_use_is_refused_at_once(side, call_main, tmp_path, monkeypatch):
    monkeypatch.setattr("shared.data.load_maps", lambda cfg: pytest.fail("loaded data"))
    with output_lock(tmp_path):
        code, _, err = call_main(train_main(side), *TINY, "--output-dir", str(tmp_path))
    assert code == 1 and f"another run (pid {__import__('os').getpid()}) is writing there" in one_line(err)


def test_only_global_rank_zero_claims_the_folder(tmp_path, monkeypatch):
    (tmp_path / "metrics.json").write_text("{}")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with claim_output_dir(TrainConfig(output_dir=str(tmp_path))):
        assert not (tmp_path / LOCK_NAME).exists()


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("entry", ["train", "evaluate"])
@pytest.mark.parametrize("kind", ["file", "/proc/wafer-bench-out", "/sys/wafer-bench/out"])
def test_unusable_output_dir_fails_before_any_work(side, entry, kind, call_main, tmp_path, monkeypatch):
    # /proc and /sys refuse new files even to root, for whom os.access says yes: the check must write
    monkeypatch.setattr("shared.data.load_maps", lambda cfg: pytest.fail("loaded data"))
    target = tmp_path / "out" if kind == "file" else Path(kind)
    if kind == "file":
        target.write_text("a file")
    argv = [*TINY, "--output-dir", str(target)] if entry == "train" else \
        ["--checkpoint", str(tmp_path / "never-read.ckpt"), "--output-dir", str(target)]
    code, _, err = call_main(train_main(side) if entry == "train" else evaluate_main(side), *argv)
    line = one_line(err)
    assert code == 1 and f"--output-dir {target}: " in line
    assert line.endswith("it is a file, not a folder" if kind == "file" else f"/{target.parts[1]} is not writable")
    assert not target.exists() or kind == "file"


@pytest.mark.slow
def test_evaluate_refuses_a_training_runs_folder(finished, call_main):
    side, out, _ = finished
    code, _, err = call_main(evaluate_main(side), "--checkpoint", str(out / "checkpoints" / f"last.{SUFFIX[side]}"),
                             "--output-dir", str(out))
    assert code == 1 and "holds a training run" in one_line(err)


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize(("entry", "flags", "named"), [
    ("train", ["--lr", "inf"], "--lr"),
    ("train", ["--weight-decay", "inf"], "--weight-decay"),
    ("train", ["--min-delta", "inf"], "--min-delta"),
    ("train", ["--overwrite", "--resume", "last"], "--overwrite"),
    ("train", ["--batch-size", str(2**64)], "--batch-size"),
    ("train", ["--image-size", "100000"], "--image-size"),  # resized in memory: tens of GB, then a traceback
    ("train", ["--lr", "1e300"], "--lr"),  # past float32: the optimizer's traceback
    ("train", ["--data", "/"], "--data"),  # a folder
    ("train", ["--resume", "/"], "--resume"),
    ("evaluate", ["--image-size", "100000"], "--image-size"),
    ("evaluate", ["--batch-size", "0"], "--batch-size"),
    ("evaluate", ["--image-size", "4"], "--image-size"),
    ("evaluate", ["--data", "/no/such/file.pkl"], "--data"),
    ("evaluate", ["--checkpoint", "/"], "--checkpoint"),  # a folder: not "no such file"
])
def test_bad_value_exits_2_naming_the_flag(side, entry, flags, named, call_main, tmp_path):
    if entry == "train":
        code, _, err = call_main(train_main(side), *TINY, "--output-dir", str(tmp_path / "out"), *flags)
    else:
        code, _, err = call_main(evaluate_main(side), "--checkpoint", str(tmp_path / "never-read.ckpt"),
                                 "--output-dir", str(tmp_path / "out"), *flags)
    assert code == 2 and err.strip().splitlines()[-1].split(": error: ")[1].startswith(f"argument {named}: ")
    assert not (tmp_path / "out").exists()


def test_the_plain_side_refuses_lightnings_own_flag(call_main, tmp_path):
    out = tmp_path / "out"
    code, _, err = call_main(train_main("plain_pytorch"), *TINY, "--output-dir", str(out), "--lightning-defaults")
    assert code == 2 and err.strip().splitlines()[-1].endswith("argument --lightning-defaults: Lightning's side only "
                                                "(python -m lightning_impl.train): the plain loop has no defaults "
                                                "of its own to switch to")
    assert not out.exists()
    code, _, err = call_main(train_main("plain_pytorch"), *TINY, "--output-dir", str(out), "--no-lightning-defaults")
    assert code == 0, err


@pytest.mark.parametrize(("flag", "why"), [("--data", "is empty: give 'synthetic' or a file's path"),
                                           ("--resume", "is empty: give 'last' or a checkpoint file's path")])
def test_an_empty_path_is_called_empty_not_a_folder(flag, why, call_main, tmp_path):
    code, _, err = call_main(train_main("plain_pytorch"), *TINY, "--output-dir", str(tmp_path / "out"), flag, "")
    name = flag.removeprefix("--")
    assert code == 2 and err.strip().splitlines()[-1].endswith(f"argument {flag}: {name}='' {why}")


@pytest.mark.parametrize("side", SIDES)
def test_empty_output_dir_exits_2(side, call_main, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = call_main(train_main(side), *TINY, "--output-dir", "")
    assert code == 2 and "argument --output-dir: " in err.strip().splitlines()[-1]
    assert list(tmp_path.iterdir()) == []


def nan_when_training(monkeypatch) -> None:
    forward = WaferCNN.forward
    monkeypatch.setattr(WaferCNN, "forward", lambda self, x: forward(self, x) * (float("nan") if self.training else 1))


@pytest.mark.slow
@pytest.mark.parametrize("side", SIDES)
def test_non_finite_loss_before_any_checkpoint_says_none_was_written(side, call_main, tmp_path, monkeypatch):
    nan_when_training(monkeypatch)
    code, _, err = call_main(train_main(side), *TINY, "--output-dir", str(tmp_path))
    line = one_line(err)
    assert code == 1 and "non-finite training loss in epoch 0" in line and "no checkpoint was written" in line
    assert not list(tmp_path.rglob("*.*pt")) and not (tmp_path / "metrics.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("side", SIDES)
def test_ctrl_c_is_one_line_with_the_checkpoint_and_the_resume_command(side, call_main, tmp_path, monkeypatch):
    forward, calls = WaferCNN.forward, []

    def interrupted(self, x):
        calls.append(self.training)
        if calls.count(True) == 7:  # epoch 1, second step: after epoch 0's checkpoint
            raise KeyboardInterrupt
        return forward(self, x)

    monkeypatch.setattr(WaferCNN, "forward", interrupted)
    handler = signal.getsignal(signal.SIGINT)
    try:
        code, _, err = call_main(train_main(side), *TINY, "--epochs", "3", "--output-dir", str(tmp_path))
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores further Ctrl-C while it shuts down
    line = err.strip().splitlines()[-1]
    assert code == 130 and "Traceback" not in err and "KeyboardInterrupt" not in err
    assert f"last checkpoint {tmp_path / 'checkpoints' / ('last.' + SUFFIX[side])}" in line
    assert line.endswith(f"--output-dir {tmp_path} --resume last")
    assert not (tmp_path / "metrics.json").exists() and not (tmp_path / LOCK_NAME).exists()


@pytest.mark.slow
@pytest.mark.parametrize("side", SIDES)
def test_sigterm_stops_as_ctrl_c_does_with_the_resume_command(side, tmp_path):
    """`kill` or a job scheduler's stop: the same line and exit 130 as Ctrl-C on both sides, not a silent death."""
    out = tmp_path / "run"
    flags = [*TINY_FLAGS, "--epochs", "100000", "--patience", "100000", "--no-plots", "--output-dir", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", f"{side}.train", *flags], cwd=Path(__file__).resolve().parents[1],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    last = out / "checkpoints" / f"last.{SUFFIX[side]}"
    deadline = time.monotonic() + 120
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and f"last checkpoint {last}" in err
    assert one_line(err).endswith(f"--output-dir {out} --resume last")  # Lightning's own notice is not shown
    assert not (out / "metrics.json").exists() and not (out / LOCK_NAME).exists()


@pytest.mark.parametrize("side", SIDES)
def test_resume_last_on_the_other_sides_folder_names_that_side(side, call_main, tmp_path):
    other = next(s for s in SIDES if s != side)
    assert call_main(train_main(other), *TINY, "--no-plots", "--output-dir", str(tmp_path))[0] == 0
    before = snapshot(tmp_path)
    code, _, err = call_main(train_main(side), *TINY, "--output-dir", str(tmp_path), "--resume", "last")
    line = one_line(err)
    assert code == 1 and f"{tmp_path / 'checkpoints' / ('last.' + SUFFIX[other])} is the other side's" in line
    assert line.endswith(f"continue it with python -m {other}.train --output-dir {tmp_path} --resume last")
    assert snapshot(tmp_path) == before


def interrupt(cfg):
    raise KeyboardInterrupt


@pytest.mark.parametrize("side", SIDES)
def test_ctrl_c_on_another_rank_exits_130_without_a_second_message(side, call_main, tmp_path, monkeypatch):
    module = importlib.import_module(f"{side}.train")
    monkeypatch.setattr(module, "fit", interrupt)
    monkeypatch.setenv("RANK", "1")
    assert call_main(module.main, *TINY, "--output-dir", str(tmp_path)) == (130, "", "")


@pytest.mark.parametrize("side", SIDES)
def test_ctrl_c_under_torchrun_says_to_continue_with_torchrun(side, call_main, tmp_path, monkeypatch):
    module = importlib.import_module(f"{side}.train")
    flags = [*TINY, "--output-dir", str(tmp_path / "run")]
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / f"last.{SUFFIX[side]}").write_bytes(b"")
    launcher = tmp_path / "torchrun"  # stands in for torchrun's agent, the parent of every worker
    launcher.write_text("import time; time.sleep(60)")
    agent = subprocess.Popen([sys.executable, str(launcher), "--nproc-per-node", "2", "-m", f"{side}.train", *flags])
    while not Path(f"/proc/{agent.pid}/cmdline").read_bytes():  # empty until the new program is set up
        time.sleep(0.01)
    monkeypatch.setattr("shared.cli.os.getppid", lambda: agent.pid)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "test")
    monkeypatch.setattr(module, "fit", interrupt)
    handler = signal.getsignal(signal.SIGINT)
    try:
        code, _, err = call_main(module.main, *flags)
    finally:
        signal.signal(signal.SIGINT, handler)
        agent.kill()
        agent.wait()
    resume = shlex.join(["torchrun", "--nproc-per-node", "2", "-m", f"{side}.train", *flags, "--resume", "last"])
    assert code == 130 and one_line(err).endswith(f"continue with: {resume}")


@pytest.mark.parametrize("side", SIDES)
def test_only_the_projects_errors_become_one_line(side, call_main, tmp_path, monkeypatch):
    module = importlib.import_module(f"{side}.train")

    def fails(error):
        def fit(cfg):
            raise error
        return fit

    monkeypatch.setattr(module, "fit", fails(DataError("mini.pkl: no labelled wafer maps")))
    code, _, err = call_main(module.main, *TINY, "--output-dir", str(tmp_path))
    assert code == 1 and one_line(err).endswith("error: mini.pkl: no labelled wafer maps")
    monkeypatch.setattr(module, "fit", fails(ValueError("a bug inside a library")))
    with pytest.raises(ValueError, match="a bug inside a library"):  # keeps its traceback
        module.main([*TINY, "--output-dir", str(tmp_path)])


@pytest.mark.parametrize("side", SIDES)
def test_an_unreadable_data_file_is_one_line_naming_it(side, call_main, tmp_path):
    data = tmp_path / "LSWMD.pkl"
    data.write_bytes(b"not a pickle")
    code, _, err = call_main(train_main(side), *TINY, "--data", str(data), "--output-dir", str(tmp_path / "out"))
    assert code == 1 and f"{data}: not a readable LSWMD pickle" in one_line(err)
    assert not (tmp_path / "out").exists()  # a refused run leaves no empty folder behind


def foreign_checkpoint(side: str, kind: str, path: Path) -> Path:
    if kind == "foreign_object":  # weights_only refuses it: torch's paragraph about its defaults must not show
        torch.save({"model": argparse.Namespace(weights=1)}, path)
    elif side == "plain_pytorch":
        torch.save({"format": "wafer-bench/plain/1", "model": {}, "epoch": 0}, path)
    else:
        torch.save({"state_dict": {}, "loops": {}, "callbacks": {}, "optimizer_states": []}, path)
    return path


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize(("kind", "cause"), [("foreign_object", "argparse.Namespace"), ("incomplete", "missing")])
def test_checkpoint_errors_say_what_is_wrong_with_which_file(side, kind, cause, call_main, tmp_path):
    path = foreign_checkpoint(side, kind, tmp_path / f"bad.{SUFFIX[side]}")
    code, _, err = call_main(evaluate_main(side), "--checkpoint", str(path), "--output-dir", str(tmp_path / "out"))
    line = one_line(err)
    assert code == 1 and line.split(": error: ")[1].startswith(f"{path}: ") and cause in line
    assert "\x1b" not in err and "weights_only" not in err
    if kind == "incomplete":
        assert ("config" if side == "plain_pytorch" else "hyper_parameters") in line


@pytest.mark.slow
def test_evaluate_names_an_image_size_other_than_the_checkpoints(finished, data_file, call_main, tmp_path, caplog):
    side, out, _ = finished
    code, _, err = call_main(evaluate_main(side), "--checkpoint", str(out / "checkpoints" / f"last.{SUFFIX[side]}"),
                             "--data", str(data_file), "--image-size", "16", "--output-dir", str(tmp_path),
                             "--accelerator", "cpu")
    assert code == 0, err
    assert "--image-size 16 differs from the checkpoint's image_size=32" in err
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["data_skipped"]["bad_codes"] == 1
    assert "skipped 1 malformed labelled maps" in caplog.text  # a fresh read at 16x16, warned again from cache below


# val_acc peaks in epoch 0 and falls after it at this learning rate; with top-1 ModelCheckpoint saves nothing
# after epoch 0, which is where save_last=True used to leave last.ckpt
PAST_THE_BEST = [*TINY_FLAGS, "--epochs", "3", "--lr", "1e-7", "--monitor", "val_acc", "--save-top-k", "1"]


@pytest.fixture(scope="module", params=SIDES)
def past_best(request, tmp_path_factory) -> tuple[str, Path, list[str]]:
    """One finished 3-epoch run per side whose best epoch is its first."""
    side, out = request.param, tmp_path_factory.mktemp(request.param) / "run"
    flags = [*PAST_THE_BEST, "--no-plots", "--output-dir", str(out)]
    train_main(side)(flags)
    return side, out, flags


def saved_epoch(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["epoch"]


@pytest.mark.slow
def test_last_checkpoint_is_the_last_epoch_not_the_best(past_best):
    side, out, _ = past_best
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["best_epoch"], metrics["epochs_run"]) == (0, 3)  # the premise: trained past the best epoch
    best = [p for p in (out / "checkpoints").iterdir() if not p.name.startswith("last.")]
    assert [saved_epoch(p) for p in best] == [0]
    assert saved_epoch(out / "checkpoints" / f"last.{SUFFIX[side]}") == 2


@pytest.mark.slow
def test_resume_last_continues_after_the_last_epoch_quietly(past_best, call_main, tmp_path, recwarn):
    side, out, flags = past_best
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    code, _, err = call_main(train_main(side), *flags, "--output-dir", str(copy), "--resume", "last", "--epochs", "4")
    assert code == 0, err
    assert [h["epoch"] for h in json.loads((copy / "metrics.json").read_text())["history"]] == [0, 1, 2, 3]
    assert saved_epoch(copy / "checkpoints" / f"last.{SUFFIX[side]}") == 3
    # the folder a resume continues is expected to hold checkpoints: Lightning's warning says nothing there
    assert not [w for w in recwarn if "exists and is not empty" in str(w.message)]


@pytest.mark.slow
def test_resume_with_fewer_epochs_than_run_exits_2_before_any_work(past_best, call_main, monkeypatch):
    side, out, flags = past_best
    monkeypatch.setattr("shared.data.load_maps", lambda cfg: pytest.fail("loaded data"))
    before = snapshot(out)
    code, _, err = call_main(train_main(side), *flags, "--resume", "last", "--epochs", "2")
    assert code == 2 and len(err.strip().splitlines()) <= 2
    assert err.strip().splitlines()[-1].endswith(f"argument --epochs: epochs=2 is fewer than the 3 epochs "
                                                 f"{out / 'checkpoints' / ('last.' + SUFFIX[side])} has already "
                                                 f"run; give --epochs 3 or more")
    assert snapshot(out) == before


@pytest.mark.slow
def test_resume_from_a_file_into_another_runs_folder_is_refused(past_best, call_main, tmp_path):
    side, out, flags = past_best
    other = tmp_path / "other"  # a folder holding a run of its own (a copy: its checkpoints are not the file's)
    shutil.copytree(out, other)
    before = snapshot(other)
    resume = out / "checkpoints" / f"last.{SUFFIX[side]}"
    code, _, err = call_main(train_main(side), *flags, "--output-dir", str(other), "--resume", str(resume),
                             "--epochs", "4")
    line = one_line(err)
    assert code == 1 and f"--output-dir {other} holds another run's outputs" in line
    assert f"--resume {resume} continues a run from elsewhere" in line
    assert snapshot(other) == before


def interrupted_in_the_first_step(monkeypatch) -> None:
    def interrupted(self, x):
        raise KeyboardInterrupt
    monkeypatch.setattr(WaferCNN, "forward", interrupted)


@pytest.mark.slow
@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("death", ["non_finite_loss", "ctrl_c"])
def test_a_run_that_died_before_its_first_checkpoint_starts_again_by_the_same_command(side, death, call_main,
                                                                                       tmp_path, monkeypatch):
    argv = [*TINY, "--no-plots", "--output-dir", str(tmp_path)]
    (nan_when_training if death == "non_finite_loss" else interrupted_in_the_first_step)(monkeypatch)
    handler = signal.getsignal(signal.SIGINT)
    try:
        code, _, err = call_main(train_main(side), *argv)
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores further Ctrl-C while it shuts down
    assert code == (1 if death == "non_finite_loss" else 130)
    if death == "ctrl_c":
        assert err.strip().splitlines()[-1].endswith(f"nothing in {tmp_path} to resume: the same command starts "
                                                     f"the run afresh")
    assert (tmp_path / "tensorboard").is_dir() and not list(tmp_path.rglob("*.*pt"))  # no checkpoint
    monkeypatch.undo()
    code, _, err = call_main(train_main(side), *argv, "--resume", "last")
    assert code == 1 and one_line(err).endswith("nothing to resume: without --resume the run starts afresh")
    code, stdout, err = call_main(train_main(side), *argv)
    assert code == 0, err
    assert f"--output-dir {tmp_path} holds a run that stopped before its first checkpoint (nothing to resume), " \
           f"so it starts afresh: removed " in stdout
    assert json.loads((tmp_path / "metrics.json").read_text())["epochs_run"] == 1
    assert len({p.name.split(".")[-2] for p in (tmp_path / "tensorboard").rglob("events.*")}) == 1  # one writer


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("entry", ["train", "evaluate"])
@pytest.mark.parametrize(("flags", "error"), [
    (["--weight-decay", "nan"], "argument --weight-decay: weight_decay=nan must be finite"),
    (["--batch-size", "x"], "argument --batch-size: invalid int value: 'x'"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
])
def test_a_bad_flag_is_a_one_line_usage_then_the_error(side, entry, flags, error, call_main, tmp_path):
    if entry == "evaluate" and flags[0] == "--weight-decay":
        flags, error = ["--batch-size", "0"], "argument --batch-size: batch_size=0 must be >= 1"
    argv = [*TINY, "--output-dir", str(tmp_path / "out")] if entry == "train" else \
        ["--checkpoint", str(tmp_path / "never-read.ckpt"), "--output-dir", str(tmp_path / "out")]
    code, _, err = call_main(train_main(side) if entry == "train" else evaluate_main(side), *argv, *flags)
    usage, line = err.strip().splitlines()
    assert code == 2 and usage.startswith("usage: ") and line.endswith(f": error: {error}")


@pytest.mark.slow
@pytest.mark.slow
def test_evaluate_scores_synthetic_maps_with_a_file_trained_checkpoint(finished, call_main, tmp_path):
    """A run trained on a file with no cap (--samples-per-class 0): --data synthetic --split all scores the
    synthetic set at its own default size; its test split (the default) is not the run's, and says so."""
    side, out, _ = finished
    path = out / "checkpoints" / f"last.{SUFFIX[side]}"
    flags = ["--checkpoint", str(path), "--data", "synthetic", "--accelerator", "cpu"]
    code, stdout, err = call_main(evaluate_main(side), *flags, "--split", "all", "--output-dir", str(tmp_path / "a"))
    assert code == 0, err
    assert scored(tmp_path / "a")[:2] == ("all", 9 * TrainConfig.samples_per_class)
    code, _, err = call_main(evaluate_main(side), *flags, "--output-dir", str(tmp_path / "t"))
    assert code == 1 and ": error: --split test (the default with --data synthetic): --data synthetic does not " \
                         "hold the maps" in one_line(err)


def test_evaluate_names_an_empty_checkpoint_path(call_main, tmp_path):
    code, _, err = call_main(evaluate_main("plain_pytorch"), "--checkpoint", "", "--output-dir", str(tmp_path / "o"))
    assert code == 2 and err.strip().splitlines()[-1].endswith("argument --checkpoint: checkpoint='' is empty: give "
                                                               "a checkpoint file's path")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_evaluation_is_one_line_and_exit_130(signum, call_main, tmp_path, monkeypatch):
    """Ctrl-C or SIGTERM while evaluate scores: one line naming what to do, exit 130; no traceback, no silent
    death (the signal is really sent: the handler turns it into the interrupt)."""
    def scoring(*args):
        os.kill(os.getpid(), signum)
        time.sleep(5)  # the signal arrives first
        raise AssertionError("not interrupted")

    monkeypatch.setattr("plain_pytorch.evaluate.evaluate_checkpoint", scoring)
    before = signal.getsignal(signal.SIGTERM)
    code, _, err = call_main(evaluate_main("plain_pytorch"), "--checkpoint", str(tmp_path / "any.pt"),
                             "--output-dir", str(tmp_path / "eval"))
    assert code == 130 and one_line(err) == (f"python -m plain_pytorch.evaluate: interrupted; the evaluation did not "
                                             f"finish (what {tmp_path / 'eval'} holds may be incomplete): the same "
                                             f"command runs it again")
    assert signal.getsignal(signal.SIGTERM) is before  # the caller's handler back


def test_evaluate_names_the_other_sides_checkpoint(finished, call_main, tmp_path):
    side, out, _ = finished
    other = next(s for s in SIDES if s != side)
    path = out / "checkpoints" / f"last.{SUFFIX[side]}"
    code, _, err = call_main(evaluate_main(other), "--checkpoint", str(path), "--output-dir", str(tmp_path))
    assert code == 1 and f"{path}: not a " in one_line(err) and one_line(err).endswith(f"checkpoint, for {side}")


@pytest.mark.slow
@pytest.mark.parametrize("batch", [None, "50"])
def test_evaluate_scores_with_its_own_batch_size(finished, data_file, batch, call_main, tmp_path, monkeypatch):
    side, out, _ = finished  # trained at batch 16
    forward, calls = WaferCNN.forward, []
    monkeypatch.setattr(WaferCNN, "forward", lambda self, x: calls.append(len(x)) or forward(self, x))
    code, _, err = call_main(evaluate_main(side), "--checkpoint", str(out / "checkpoints" / f"last.{SUFFIX[side]}"),
                             "--data", str(data_file), "--output-dir", str(tmp_path), "--accelerator", "cpu",
                             *(["--batch-size", batch] if batch else []))
    assert code == 0, err
    maps = sum(c["support"] for c in json.loads((tmp_path / "metrics.json").read_text())["test"]["per_class"].values())
    size = int(batch or 1024)  # the default: far more than the 108 maps here
    assert calls == [min(size, maps - i) for i in range(0, maps, size)]



@pytest.fixture(scope="module", params=SIDES)
def two_epochs(request, tmp_path_factory, data_file) -> tuple[str, Path, str]:
    """One finished 2-epoch run per side on the LSWMD-format file, and its console output (the split sizes)."""
    side, out = request.param, tmp_path_factory.mktemp(request.param) / "run"
    flags = [*TINY_FLAGS, "--epochs", "2", "--data", str(data_file), "--samples-per-class", "5", "--no-plots",
             "--output-dir", str(out)]
    console = io.StringIO()
    with contextlib.redirect_stdout(console):
        train_main(side)(flags)
    return side, out, console.getvalue()


def best_checkpoint(side: str, out: Path) -> Path:
    """The checkpoint of the run's best epoch: the weights its own test figures come from."""
    best = json.loads((out / "metrics.json").read_text())["best_epoch"]
    (path,) = (out / "checkpoints").glob(f"epoch={best}-*.{SUFFIX[side]}")
    return path


def scored(out: Path) -> tuple[str, int, dict]:
    """(split, number of maps, test metrics) of an evaluate command's metrics.json."""
    metrics = json.loads((out / "metrics.json").read_text())
    return metrics["scored_split"], sum(c["support"] for c in metrics["test"]["per_class"].values()), metrics["test"]


@pytest.mark.slow
def test_evaluate_split_rebuilds_the_runs_own_val_and_test_splits(two_epochs, data_file, call_main, tmp_path):
    side, out, console = two_epochs
    sizes = re.search(r"train (\d+) / val (\d+) / test (\d+)", console).groups()  # the run's banner
    flags = ["--checkpoint", str(best_checkpoint(side, out)), "--data", str(data_file), "--accelerator", "cpu",
             "--batch-size", "16"]  # the run's own batch size: the same sums, so the same predictions
    for split in ("val", "test", None):
        code, stdout, err = call_main(evaluate_main(side), *flags, "--output-dir", str(tmp_path / str(split)),
                                      *(["--split", split] if split else []))
        assert code == 0, err
        assert f"maps ({split or 'all'} split)" in stdout
    # without --data: the data the run was trained on, its own test split (not every map: most were trained on)
    code, stdout, err = call_main(evaluate_main(side), *flags[:2], *flags[4:], "--output-dir", str(tmp_path / "own"))
    assert code == 0, err
    assert f"on {data_file}: {sizes[2]} maps (test split)" in stdout
    assert scored(tmp_path / "own") == scored(tmp_path / "test")
    assert scored(tmp_path / "val")[:2] == ("val", int(sizes[1]))
    assert scored(tmp_path / "test")[:2] == ("test", int(sizes[2])) and sizes[1] != sizes[2]
    assert scored(tmp_path / "None")[:2] == ("all", 9 * 12)  # a file's default: every labelled map, as before
    run = json.loads((out / "metrics.json").read_text())["test"]
    assert scored(tmp_path / "test")[2]["confusion_matrix"] == run["confusion_matrix"]
    assert scored(tmp_path / "test")[2]["f1_macro_bootstrap_95"] == run["f1_macro_bootstrap_95"]


@pytest.mark.slow
@pytest.mark.parametrize("other", ["other maps", "synthetic"])
def test_evaluate_split_refuses_data_other_than_the_runs(two_epochs, other, call_main, tmp_path):
    side, out, _ = two_epochs
    data = "synthetic" if other == "synthetic" else str(lswmd_with_a_malformed_map(tmp_path / "mini.pkl", seed=1))
    path = best_checkpoint(side, out)
    code, _, err = call_main(evaluate_main(side), "--checkpoint", str(path), "--data", data, "--split", "val",
                             "--accelerator", "cpu", "--output-dir", str(tmp_path / "out"))
    assert code == 1 and f"--split val: --data {data} does not hold the maps {path} was trained on" in one_line(err)
    assert not (tmp_path / "out" / "metrics.json").exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("module", ["plain_pytorch.train", "lightning_impl.train", "plain_pytorch.evaluate"])
def test_ctrl_c_while_importing_is_one_line_and_exit_130(module, signum, tmp_path):
    """Ctrl-C or SIGTERM in the seconds a command spends importing torch and Lightning: one line, exit 130, no
    traceback, no silent death."""
    proc = subprocess.Popen([sys.executable, "-m", module, "--output-dir", str(tmp_path / "run")],
                            cwd=Path(__file__).resolve().parents[1], stderr=subprocess.PIPE, text=True)
    time.sleep(0.4)  # the package is imported first (~0.05 s), torch after it (seconds)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip() == "interrupted while starting; nothing was written"
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("where", ["moved", "new"])
def test_a_resume_elsewhere_ranks_and_tests_only_its_own_folders_checkpoints(side, where, call_main, tmp_path):
    """Continued in a moved (copied, original deleted) folder, a run keeps and prunes the copies there; continued
    from a file into a new folder, it starts a fresh top k; neither reads a file of the first folder."""
    first, there = tmp_path / "first", tmp_path / "there"
    flags = [*TINY_FLAGS, "--save-top-k", "1", "--no-plots"]
    code, _, err = call_main(train_main(side), *flags, "--epochs", "2", "--output-dir", str(first))
    assert code == 0, err
    if where == "moved":
        shutil.copytree(first, there)
        (there / "metrics.json").unlink()  # not finished: a resume continues it
        argv = ["--resume", "last", "--output-dir", str(there)]
    else:
        kept = tmp_path / f"last.{SUFFIX[side]}"
        shutil.copy(first / "checkpoints" / kept.name, kept)
        argv = ["--resume", str(kept), "--output-dir", str(there)]
    shutil.rmtree(first)
    code, _, err = call_main(train_main(side), *argv, "--epochs", "4")
    assert code == 0, err
    best = [p.name for p in (there / "checkpoints").glob("epoch=*")]
    assert len(best) == 1, best  # --save-top-k 1 honoured over the resumed run
    assert json.loads((there / "metrics.json").read_text())["epochs_run"] == 4
