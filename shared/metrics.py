"""Final test metrics from predictions, via scikit-learn: the one function both sides call."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from shared.config import CLASS_NAMES


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
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(class_names, *per_class)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        # each row divided by its true-class count: the diagonal is each class's recall (0 where a class is absent)
        "confusion_matrix_normalized": np.nan_to_num(
            confusion_matrix(y_true, y_pred, labels=labels, normalize="true")).round(4).tolist(),
    }
