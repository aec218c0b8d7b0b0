"""Checks on the comparison: every run worked, the two sides did the same work, the report is complete."""

from __future__ import annotations

import json

import pytest

from benchmarks.conftest import Suite
from benchmarks.runner import SIDES

SECTIONS = ("## Lines of code", "## Runtime", "## Overhead decomposition", "## Memory", "## Final test metrics",
            "## Parity", "## Model FLOP utilisation", "## Claims checked")


@pytest.mark.parametrize("side", SIDES)
def test_every_run_succeeded(suite: Suite, side: str) -> None:
    failures = [msg for acc in suite.summary.values() for msg in acc["errors"][side]]
    assert not failures, f"{side}: {len(failures)} failed runs:\n" + "\n".join(failures)


@pytest.mark.parametrize("side", SIDES)
def test_side_learns(suite: Suite, side: str) -> None:
    """Above chance (1/9) by a clear margin on the profiles that train long enough to learn."""
    if suite.profile.name == "smoke":
        pytest.skip("the smoke profile trains 2 epochs on 108 maps: too little to expect learning")
    for acc, s in suite.summary.items():
        acc_mean = s["final_metrics"]["accuracy"][side]["mean"]
        assert acc_mean > 0.4, f"{acc}: {side} test accuracy {acc_mean:.3f}"


def test_same_initial_weights(suite: Suite) -> None:
    rows = [p for s in suite.summary.values() for p in s["parity"]]
    assert rows, "no round in which both sides finished"
    assert all(p["initial_weights_identical"] for p in rows), rows


def test_step_losses_match_on_cpu(suite: Suite) -> None:
    """Same weights, batches and dropout masks: per-step losses agree to 1e-6 over the first epoch."""
    if "cpu" not in suite.summary:
        pytest.skip("parity is checked on the CPU (GPU kernels need not be bitwise reproducible)")
    rows = suite.summary["cpu"]["parity"]
    assert rows
    worst = max(p["max_step_loss_diff_epoch0"] for p in rows)
    assert worst <= 1e-6, f"largest first-epoch step-loss difference {worst:.3e}"


def test_final_metrics_agree(suite: Suite) -> None:
    """The framework must not change what is learned: the side gap stays within seed-to-seed noise."""
    for acc, s in suite.summary.items():
        row = s["final_metrics"]["accuracy"]
        if row.get("gap_in_seed_std") is None:
            assert abs(row.get("gap", 0.0)) <= 0.05, f"{acc}: accuracy gap {row}"
        else:
            assert abs(row["gap_in_seed_std"]) <= 2.0, f"{acc}: accuracy gap {row}"


def test_report_complete(suite: Suite) -> None:
    text = (suite.report_dir / "comparison.md").read_text()
    for section in SECTIONS:
        assert section in text, section
    for name in ("runtime.png", "loss_curves.png", "confusion_matrices.png", "step_loss_diff.png"):
        assert (suite.report_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    data = json.loads((suite.report_dir / "benchmark.json").read_text())
    assert set(data) == {"raw", "summary"}
    for acc, s in suite.summary.items():
        rt = s["runtime"]
        for figure in ("wall_seconds", "first_step_seconds", "step_ms", "import_seconds"):
            for side in SIDES:
                assert rt[figure]["sides"][side], f"{acc}: {figure} of {side} not measured"
        assert s["mfu"]["sides"], f"{acc}: MFU not measured"
