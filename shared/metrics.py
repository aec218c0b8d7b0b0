"""Final test metrics from predictions, via scikit-learn: the one function both sides call."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from shared.config import CLASS_NAMES

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0  # fixed: the interval is a function of the predictions alone, the same on both sides


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray,
                           class_names: tuple[str, ...] = CLASS_NAMES) -> dict:
    """Accuracy, macro precision/recall/F1, per-class report and confusion matrix (rows = true)."""
    labels = np.arange(len(class_names))
    macro = precision_recall_fscore_support(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    per_class = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision_macro": float(macro[0]),
        "recall_macro": float(macro[1]),
        "f1_macro": float(macro[2]),
        # how much the figure owes to which maps were drawn for the split (the model held fixed)
        "f1_macro_bootstrap_95": bootstrap_f1_macro(y_true, y_pred, len(class_names)),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(class_names, *per_class)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        # each row divided by its true-class count: the diagonal is each class's recall (0 where a class is absent)
        "confusion_matrix_normalized": np.nan_to_num(
            confusion_matrix(y_true, y_pred, labels=labels, normalize="true")).round(4).tolist(),
    }


def bootstrap_f1_macro(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int,
                       resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> list[float] | None:
    """Percentile 95 % interval of macro-F1 over maps resampled with replacement; None for no maps."""
    n = len(y_true)
    if n == 0:
        return None
    rng = np.random.default_rng(seed)
    codes = np.asarray(y_true, dtype=np.int64) * num_classes + np.asarray(y_pred, dtype=np.int64)
    scores = []
    for start in range(0, resamples, 50):  # 50 resamples at a time: memory stays ~50 x n integers
        draw = codes[rng.integers(0, n, size=(min(50, resamples - start), n))]
        offsets = np.arange(len(draw))[:, None] * num_classes**2
        cm = np.bincount((draw + offsets).ravel(), minlength=len(draw) * num_classes**2)
        cm = cm.reshape(len(draw), num_classes, num_classes)
        tp = np.diagonal(cm, axis1=1, axis2=2)
        denominator = cm.sum(axis=1) + cm.sum(axis=2)  # 2 tp + fp + fn
        # sklearn's zero_division=0: a class neither present nor predicted scores 0, as in the point estimate
        f1 = np.divide(2 * tp, denominator, out=np.zeros(tp.shape), where=denominator > 0)
        scores.append(f1.mean(axis=1))
    low, high = np.percentile(np.concatenate(scores), [2.5, 97.5])
    return [float(low), float(high)]
