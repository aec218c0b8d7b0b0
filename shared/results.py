"""RunResult, the record both sides return from fit(), and the files every run writes."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tabulate import tabulate

from shared.config import TrainConfig
from shared.data import WaferSplits, class_mix, describe
from shared.runtime import atomic_write_text

SAMPLE_GRID = 18  # maps in sample_predictions.png


@dataclass
class RunResult:
    """What one training run did and measured; serialised as metrics.json."""

    implementation: str
    config: dict
    device: str
    world_size: int = 1
    num_parameters: int = 0
    epochs_run: int = 0
    best_epoch: int | None = None  # 0-based, as Lightning counts
    best_score: float | None = None
    stop_reason: str = "max_epochs"  # max_epochs | early_stopping | non_finite_loss
    fit_seconds: float = 0.0
    first_step_unix: float | None = None  # wall clock after the first optimizer step (synchronised)
    history: list[dict] = field(default_factory=list)  # per epoch: train/val loss and accuracy, lr, train_seconds, train_cpu_seconds
    step_losses: list[float] = field(default_factory=list)
    steps_per_epoch: int = 0
    train_size: int = 0  # training maps per epoch, all ranks together
    initial_weights_sha256: str = ""
    final_weights_sha256: str = ""
    peak_cuda_memory_bytes: int | None = None
    test: dict = field(default_factory=dict)
    data_skipped: dict = field(default_factory=dict)  # real data: malformed/unlabelled maps left out, by reason
    test_class_mix: str = ""  # which class proportions `test` was measured on (shared.data.class_mix)
    scored_split: str = "test"  # which maps `test` holds: evaluate --split test | val | all

    def to_json(self) -> str:
        return json.dumps(_finite(dataclasses.asdict(self)), indent=2)


def _finite(obj):
    """JSON has no NaN/inf: write them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def finish_run(result: RunResult, cfg: TrainConfig, inputs: torch.Tensor, y_true: torch.Tensor,
               y_pred: torch.Tensor) -> RunResult:
    """Compute test metrics, write metrics.json and (with cfg.plots) both PNGs into cfg.output_dir; return the result."""
    from shared.metrics import classification_metrics  # sklearn and matplotlib: imported when a run ends, not at start

    y_true_np, y_pred_np = y_true.cpu().numpy(), y_pred.cpu().numpy()
    result.test_class_mix = class_mix(cfg)
    result.test = classification_metrics(y_true_np, y_pred_np)
    out = Path(cfg.output_dir)
    if cfg.plots:
        from shared.plots import plot_confusion_matrix, plot_sample_predictions

        plot_confusion_matrix(result.test["confusion_matrix"], out / "confusion_matrix.png",
                              title=f"{result.implementation}: confusion matrix ({result.scored_split})")
        pick = np.random.default_rng(cfg.seed).choice(len(y_true_np), size=min(SAMPLE_GRID, len(y_true_np)),
                                                      replace=False)
        plot_sample_predictions(inputs[pick].cpu().numpy(), y_true_np[pick], y_pred_np[pick],
                                out / "sample_predictions.png")
    atomic_write_text(out / "metrics.json", result.to_json())
    return result


def per_class_table(result: RunResult) -> str:
    """Precision, recall, F1 and support per class, as a process engineer reads them first."""
    rows = [[name, f"{c['precision']:.3f}", f"{c['recall']:.3f}", f"{c['f1']:.3f}", c["support"]]
            for name, c in result.test["per_class"].items()]
    return tabulate(rows, headers=["class", "precision", "recall", "F1", "maps"], tablefmt="simple",
                    disable_numparse=True)


def summary_lines(result: RunResult) -> list[str]:
    """The final console lines both sides print."""
    t = result.test
    return [
        f"stopped: {result.stop_reason} after {result.epochs_run} epochs (best epoch {result.best_epoch}, "
        f"{result.config['monitor']}={result.best_score})",
        f"test: accuracy {t['accuracy']:.4f} | precision {t['precision_macro']:.4f} | "
        f"recall {t['recall_macro']:.4f} | F1 (macro) {t['f1_macro']:.4f}",
        f"fit {result.fit_seconds:.1f} s; outputs in {result.config['output_dir']}",
    ]


def best_epoch(history: list[dict], cfg: TrainConfig) -> tuple[int | None, float | None]:
    """The epoch with the best monitored value and that value; ties pick the earlier epoch, as ModelCheckpoint."""
    scored = [entry for entry in history if entry[cfg.monitor] is not None]  # none in Lightning's barebones
    best = (min if cfg.monitor_mode == "min" else max)(scored, key=lambda e: e[cfg.monitor], default=None)
    return (best["epoch"], best[cfg.monitor]) if best else (None, None)


def print_banner(cfg: TrainConfig, splits: WaferSplits, result: RunResult) -> None:
    """The data, model, device and global batch of the run about to start."""
    print(describe(cfg, splits))
    print(f"model: WaferCNN, {result.num_parameters:,} parameters | device {result.device} | precision "
          f"{cfg.precision} | {result.world_size} process(es) x batch {cfg.batch_size} = global batch "
          f"{cfg.batch_size * result.world_size}", flush=True)


def report(fit: Callable[[TrainConfig], RunResult], cfg: TrainConfig) -> None:
    """Train, then print the summary (on global rank 0, the only process that fills result.test)."""
    result = fit(cfg)
    if result.test:
        print(*summary_lines(result), sep="\n")
