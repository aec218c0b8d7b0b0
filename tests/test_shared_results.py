"""RunResult serialisation and the files finish_run writes."""

from __future__ import annotations

import json
import math

import numpy as np
import torch

from shared.results import RunResult, finish_run, summary_lines


def make_result(cfg) -> RunResult:
    return RunResult(implementation="plain", config=cfg.to_dict(), device="cpu", epochs_run=2, best_epoch=1,
                     best_score=0.5, fit_seconds=1.25,
                     history=[{"epoch": 0, "train_loss": 2.0, "val_loss": float("nan")},
                              {"epoch": 1, "train_loss": float("inf"), "val_loss": 0.5}],
                     step_losses=[1.0, float("-inf"), 0.5])


def test_to_json_writes_non_finite_as_null(tiny_cfg):
    result = make_result(tiny_cfg)
    result.best_score = float("nan")
    text = result.to_json()
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text)
    assert data["best_score"] is None
    assert data["history"][0]["val_loss"] is None and data["history"][1]["train_loss"] is None
    assert data["history"][1]["val_loss"] == 0.5
    assert data["step_losses"] == [1.0, None, 0.5]
    assert data["config"]["epochs"] == tiny_cfg.epochs
    assert math.isnan(result.best_score)  # serialising does not change the result


def test_finish_run_writes_metrics_and_plots(tiny_cfg):
    y_true = torch.arange(9).repeat(3)
    y_pred = y_true.clone()
    y_pred[:3] = 8
    inputs = torch.randint(0, 3, (27, 1, 16, 16)).float() / 2
    result = finish_run(make_result(tiny_cfg), tiny_cfg, inputs, y_true, y_pred)
    out = tiny_cfg.checkpoint_dir.parent
    assert sorted(p.name for p in out.iterdir()) == ["confusion_matrix.png", "metrics.json", "sample_predictions.png"]
    data = json.loads((out / "metrics.json").read_text())
    for key in ("implementation", "epochs_run", "best_epoch", "fit_seconds", "history"):
        assert key in data
    assert (data["implementation"], data["epochs_run"], data["best_epoch"], data["fit_seconds"]) == ("plain", 2, 1, 1.25)
    assert len(data["history"]) == 2
    test = data["test"]
    assert test["accuracy"] == result.test["accuracy"] == 24 / 27
    for key in ("precision_macro", "recall_macro", "f1_macro"):
        assert 0 < test[key] < 1
    cm = np.array(test["confusion_matrix"])
    assert cm.trace() == 24 and cm[0, 8] == cm[1, 8] == cm[2, 8] == 1
    lines = summary_lines(result)
    assert "accuracy 0.8889" in lines[1] and tiny_cfg.output_dir in lines[2]
