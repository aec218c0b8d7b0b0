"""PNG figures both sides write after testing (and the benchmark report reuses)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: CI and servers have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from shared.config import CLASS_NAMES  # noqa: E402
from shared.runtime import atomic_write_bytes  # noqa: E402

# off-wafer, good die, failed die: fixed so every figure reads the same
WAFER_CMAP = ListedColormap(["#f0f0f0", "#4c9f70", "#d1495b"])


def save_figure(fig: plt.Figure, path: str | Path) -> None:
    """Render to PNG in memory, then write atomically; closes the figure."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def draw_confusion_matrix(ax: plt.Axes, matrix, class_names=CLASS_NAMES, title: str = "") -> None:
    """Heatmap normalised by true class (the diagonal is each class's recall), annotated with rate and count."""
    counts = np.asarray(matrix)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    labels = np.array([[f"{r:.2f}\n{c}" if c else "" for r, c in zip(*row)] for row in zip(rates, counts)])
    sns.heatmap(rates, annot=labels, fmt="", annot_kws={"fontsize": 7}, cmap="Blues", vmin=0, vmax=1, cbar=False,
                square=True, xticklabels=class_names, yticklabels=class_names, ax=ax)
    ax.set(xlabel="predicted", ylabel="true (rows sum to 1)", title=title)


def plot_confusion_matrix(matrix, path: str | Path, title: str = "Confusion matrix (test)") -> None:
    fig, ax = plt.subplots(figsize=(7, 6))
    draw_confusion_matrix(ax, matrix, title=title)
    save_figure(fig, path)


def plot_sample_predictions(maps: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, path: str | Path,
                            columns: int = 6) -> None:
    """Grid of model inputs (die codes / 2) titled true -> predicted; misses in red."""
    n = len(maps)
    rows = max(1, int(np.ceil(n / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(2.1 * columns, 2.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, wafer, t, p in zip(axes.flat, maps, y_true, y_pred):
        codes = np.rint(np.asarray(wafer).squeeze() * 2)
        ax.imshow(codes, cmap=WAFER_CMAP, vmin=0, vmax=2, interpolation="nearest")
        ax.set_title(f"{CLASS_NAMES[t]}\n-> {CLASS_NAMES[p]}", fontsize=8, color="black" if t == p else "#d1495b")
    save_figure(fig, path)
