"""What both sides promise alike, tested once over ["plain_pytorch", "lightning_impl"]: evaluate, bad flags."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SIDES, TINY_FLAGS, tiny

from shared.cli import parse_config
from shared.results import RunResult

SUFFIX = {"plain_pytorch": "pt", "lightning_impl": "ckpt"}


def entry(side: str, command: str):
    """The side's module for `command` ('train' or 'evaluate')."""
    return importlib.import_module(f"{side}.{command}")


@pytest.fixture(scope="module", params=SIDES)
def trained(request, tmp_path_factory) -> tuple[str, Path, RunResult]:
    """(side, checkpoint folder, result) of one tiny run per side, with its best checkpoint kept."""
    cfg = tiny(tmp_path_factory.mktemp(request.param) / "run", save_top_k=1)
    return request.param, cfg.checkpoint_dir, entry(request.param, "train").fit(cfg)


def test_tiny_flags_are_the_tiny_config(tmp_path):
    flags = [*TINY_FLAGS, "--epochs", "2", "--output-dir", str(tmp_path)]
    assert parse_config("test", "", flags) == tiny(tmp_path)


@pytest.mark.slow
def test_evaluate_cli_reproduces_the_test_metrics(trained, tmp_path, call_main):
    side, checkpoints, result = trained
    best = next(checkpoints.glob(f"epoch={result.best_epoch}-*.{SUFFIX[side]}"))
    code, out, err = call_main(entry(side, "evaluate").main, "--checkpoint", str(best), "--data", "synthetic",
                               "--output-dir", str(tmp_path), "--accelerator", "cpu")
    assert code == 0, err
    evaluated = json.loads((tmp_path / "metrics.json").read_text())
    # the run tested this checkpoint on the same synthetic test split
    assert evaluated["test"] == json.loads(json.dumps(result.test)) and evaluated["epochs_run"] == 0
    assert evaluated["implementation"] == side
    assert (tmp_path / "confusion_matrix.png").is_file() and (tmp_path / "sample_predictions.png").is_file()
    assert "test: accuracy" in out
    per_class = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()[:1] == ["Scratch"]}
    scratch = evaluated["test"]["per_class"]["Scratch"]
    assert per_class["Scratch"] == [f"{scratch[k]:.3f}" for k in ("precision", "recall", "f1")] + [str(scratch["support"])]
    assert "test class mix: synthetic, balanced" in out


def by_hand(side: str, checkpoint: Path, cfg, split: str) -> tuple[list, list]:
    """Confusion matrices of a checkpoint's weights on a split of cfg's data: with the dihedral mean, and without."""
    import torch

    from shared.data import split_dataset
    from shared.metrics import classification_metrics
    from shared.model import build_model, tta_log_probs

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    weights = ckpt["model"] if side == "plain_pytorch" else \
        {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    model = build_model(cfg).eval()
    model.load_state_dict(weights)
    x, y = getattr(split_dataset(cfg), split).tensors
    with torch.no_grad():
        preds = tta_log_probs(model, x).argmax(1), model(x).argmax(1)
    return tuple(classification_metrics(y.numpy(), p.numpy())["confusion_matrix"] for p in preds)


@pytest.mark.slow
def test_evaluate_tta_scores_a_checkpoint_trained_without_it(trained, tmp_path, call_main):
    side, checkpoints, result = trained
    assert result.config["tta"] is False
    best = next(checkpoints.glob(f"epoch={result.best_epoch}-*.{SUFFIX[side]}"))
    code, out, err = call_main(entry(side, "evaluate").main, "--checkpoint", str(best), "--data", "synthetic",
                               "--split", "val", "--tta", "--output-dir", str(tmp_path), "--accelerator", "cpu")
    assert code == 0, err
    evaluated = json.loads((tmp_path / "metrics.json").read_text())
    assert evaluated["config"]["tta"] is True and evaluated["scored_split"] == "val"
    with_tta, without = by_hand(side, best, tiny(tmp_path), "val")
    assert with_tta != without  # else this test could not tell the two apart
    assert evaluated["test"]["confusion_matrix"] == with_tta


@pytest.mark.slow
@pytest.mark.parametrize("side", SIDES)
def test_a_run_with_tta_tests_its_best_weights_with_the_dihedral_mean(side, tmp_path):
    cfg = tiny(tmp_path / "run", save_top_k=1, tta=True)
    result = entry(side, "train").fit(cfg)
    best = next(cfg.checkpoint_dir.glob(f"epoch={result.best_epoch}-*.{SUFFIX[side]}"))
    with_tta, without = by_hand(side, best, cfg, "test")
    assert with_tta != without and result.test["confusion_matrix"] == with_tta


@pytest.mark.slow
def test_evaluate_cli_on_lswmd_file_uses_every_labelled_row(trained, tmp_path, call_main, monkeypatch):
    monkeypatch.setenv("WAFER_BENCH_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    maps = [rng.integers(0, 3, size=(26, 26)).astype(np.uint8) for _ in range(12)]
    labels = [np.array([["Center"]]), np.array([["none"]]), np.zeros((0, 0))] * 4  # a third unlabelled
    pd.DataFrame({"waferMap": maps, "failureType": labels}).to_pickle(tmp_path / "mini.pkl")
    side, checkpoints, _ = trained
    code, out, err = call_main(entry(side, "evaluate").main, "--checkpoint", str(checkpoints / f"last.{SUFFIX[side]}"),
                               "--data", str(tmp_path / "mini.pkl"), "--output-dir", str(tmp_path / "out"))
    assert code == 0, err
    test = json.loads((tmp_path / "out" / "metrics.json").read_text())["test"]
    assert sum(c["support"] for c in test["per_class"].values()) == 8 and ": 8 maps" in out


@pytest.mark.parametrize("flags", [["--epochs", "0"], ["--precision", "fp8"], ["--lr", "fast"]])
def test_bad_flags_are_rejected_alike(flags, monkeypatch, capsys):
    outcomes = []
    for side in SIDES:
        monkeypatch.setattr(sys, "argv", ["prog", *flags])
        with pytest.raises(SystemExit) as stopped:
            entry(side, "train").main()
        message = capsys.readouterr().err.strip().splitlines()[-1]
        outcomes.append((stopped.value.code, message.split(": error: ", 1)[1]))
    assert outcomes[0] == outcomes[1]
    assert outcomes[1][0] == 2 and outcomes[1][1].startswith(f"argument {flags[0]}")


def _feature_traces(result: RunResult, output_dir: Path, console: str) -> dict[str, bool]:
    """Which of the four features left their trace in a finished run."""
    return {"tensorboard": any((output_dir / "tensorboard").rglob("events.out.tfevents.*")),
            "progress_bar": "Epoch 0" in console,  # the bar's description (the epoch lines say "epoch 0:")
            "checkpoints": any((output_dir / "checkpoints").glob("last.*")),
            "early_stopping": result.stop_reason == "early_stopping"}


@pytest.mark.slow
@pytest.mark.parametrize("off", [None, "tensorboard", "progress_bar", "checkpoints", "early_stopping"])
@pytest.mark.parametrize("side", SIDES)
def test_each_feature_switches_off_alone(side, off, tmp_path, capsys):
    # min_delta 100: no epoch after the first improves, so early stopping (patience 1) ends 3 epochs after 2
    changes = {} if off is None else {off: False}
    cfg = tiny(tmp_path / "run", epochs=3, patience=1, min_delta=100.0, **changes)
    result = entry(side, "train").fit(cfg)
    captured = capsys.readouterr()
    traces = _feature_traces(result, tmp_path / "run", captured.out + captured.err)
    assert traces == {feature: feature != off for feature in traces}
    assert result.epochs_run == (3 if off == "early_stopping" else 2)
    assert all(entry_["val_loss"] is not None for entry_ in result.history)  # metrics stay, whatever is off
    assert (tmp_path / "run" / "metrics.json").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("side", SIDES)
def test_a_resumed_run_draws_the_balanced_samplers_batches_of_an_uninterrupted_one(side, tmp_path):
    cfg = tiny(tmp_path / "resumed", sampler="balanced", sampler_power=0.5, balance_classes=False)
    fit = entry(side, "train").fit
    fit(cfg)
    resumed = fit(cfg.replace(epochs=3, resume="last"))
    whole = fit(cfg.replace(epochs=3, output_dir=str(tmp_path / "whole")))
    assert resumed.step_losses == whole.step_losses and len(whole.step_losses) == 3 * whole.steps_per_epoch
    assert resumed.final_weights_sha256 == whole.final_weights_sha256
