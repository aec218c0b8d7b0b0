"""The report's figures (seaborn/matplotlib, PNG), drawn from the raw run records."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from benchmarks.runner import SIDE_NAMES as NAMES
from benchmarks.summary import run_figures
from shared.plots import draw_confusion_matrix, save_figure


def _end_to_end(raw: dict) -> list[dict]:
    return [r for entry in raw["accelerators"].values() for r in entry["runs"] if r["kind"] == "end_to_end" and r["ok"]]


def runtime_plot(raw: dict, path: Path) -> None:
    """End-to-end wall time and steady step time per side, every round shown."""
    rows = [{"device": r["accelerator"], "side": NAMES[r["side"]], **run_figures(r)} for r in _end_to_end(raw)]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    if rows:
        frame = pd.DataFrame(rows)
        for ax, (col, label) in zip(axes, (("wall_seconds", "end-to-end wall time (s)"), ("step_ms", "steady ms/step"))):
            sns.boxplot(frame, x="device", y=col, hue="side", ax=ax, fill=False, showfliers=False)
            sns.stripplot(frame, x="device", y=col, hue="side", dodge=True, ax=ax, legend=False, size=5)
            ax.set(ylabel=label, ylim=(0, None))
    fig.suptitle("Runtime per side (each point one fresh-process run)")
    save_figure(fig, path)


def _first_pair(raw: dict) -> dict[str, dict]:
    """The first round in which both sides succeeded (same seed), per side: its metrics."""
    runs = _end_to_end(raw)
    for r in sorted(runs, key=lambda r: (r["accelerator"] != "cpu", r["round"])):
        pair = {x["side"]: x["metrics"] for x in runs if x["round"] == r["round"] and x["accelerator"] == r["accelerator"]}
        if len(pair) == 2:
            return pair
    return {}


def loss_curves_plot(raw: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    pair = _first_pair(raw)
    for side, m in pair.items():
        epochs = [h["epoch"] for h in m["history"]]
        style = "-" if side == "plain" else "--"
        ax.plot(epochs, [h["train_loss"] for h in m["history"]], style, label=f"{NAMES[side]} train")
        ax.plot(epochs, [h["val_loss"] for h in m["history"]], style, label=f"{NAMES[side]} val")
    ax.set(xlabel="epoch", ylabel="loss", title="Loss curves, same seed (lines should overlap)")
    if pair:
        ax.legend()
    save_figure(fig, path)


def confusion_plot(raw: dict, path: Path) -> None:
    pair = _first_pair(raw)
    fig, axes = plt.subplots(1, 2, figsize=(14, 6))
    for ax, side in zip(axes, ("plain", "lightning")):
        if side in pair:
            draw_confusion_matrix(ax, pair[side]["test"]["confusion_matrix"], title=f"{NAMES[side]} (test)")
    save_figure(fig, path)


def step_diff_plot(raw: dict, path: Path) -> None:
    pair = _first_pair(raw)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    if len(pair) == 2:
        a, b = (np.asarray(pair[s]["step_losses"], float) for s in ("plain", "lightning"))
        n = min(len(a), len(b))
        diff = np.abs(a[:n] - b[:n])
        floor = 1e-12  # identical losses would vanish on a log axis
        ax.semilogy(np.arange(n), np.maximum(diff, floor), lw=1)
        ax.axhline(1e-6, color="grey", ls=":", label="goal 1e-6")
        ax.legend()
    ax.set(xlabel="training step", ylabel="|loss plain - loss Lightning|",
           title="Per-step training-loss difference (1e-12 = identical)")
    save_figure(fig, path)


def overhead_points(summary: dict, accelerator: str) -> list[dict]:
    """Per block setting: plain's µs/step and the Lightning/plain ratio with its interval (primary metric)."""
    blocks = (summary.get(accelerator) or {}).get("blocks")
    if not blocks:
        return []
    metric, points = blocks["primary"], []
    for name, row in blocks["settings"].items():
        plain, ratio = row["arms"][metric].get("plain"), row["comparisons"][metric].get("lightning / plain", {}).get("ratio")
        if plain and ratio and name != "features":
            low, high = ratio["ci95"] or ratio["range"]
            points.append({"setting": name, "plain_us": plain["median"], "ratio": ratio["ratio"], "low": low, "high": high})
    return points


def overhead_plot(summary: dict, path: Path) -> None:
    """Measured Lightning/plain ratio against plain's step time, with 1 + X/T for the fixed cost X."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for acc, marker in (("cpu", "o"), ("gpu", "s")):
        points = overhead_points(summary, acc)
        overhead = summary.get("step_overhead", {}).get(acc, {}).get("fixed_overhead_us")
        if not points:
            continue
        t = np.array([p["plain_us"] for p in points])
        r = np.array([p["ratio"] for p in points])
        err = np.array([[p["ratio"] - p["low"] for p in points], [p["high"] - p["ratio"] for p in points]])
        ax.errorbar(t, r, yerr=err, fmt=marker, capsize=3, label=f"{acc.upper()} measured (95% interval)")
        if overhead:
            grid = np.geomspace(min(t.min(), 1.0) * 0.8, t.max() * 1.5, 200)
            x = overhead["difference"]
            ax.plot(grid, 1 + x / grid, "--", label=f"{acc.upper()}: 1 + X/T, X = {x:.0f} µs")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set(xscale="log", xlabel="plain PyTorch time per step T (µs)", ylabel="Lightning / plain per step",
           title="Lightning's per-step overhead against the step's own cost")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    save_figure(fig, path)


def write_all(raw: dict, summary: dict, folder: Path) -> None:
    runtime_plot(raw, folder / "runtime.png")
    overhead_plot(summary, folder / "overhead_vs_step_time.png")
    loss_curves_plot(raw, folder / "loss_curves.png")
    confusion_plot(raw, folder / "confusion_matrices.png")
    step_diff_plot(raw, folder / "step_loss_diff.png")
