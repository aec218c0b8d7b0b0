"""classification_metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from shared.config import CLASS_NAMES
from shared.metrics import bootstrap_f1_macro, classification_metrics


def test_hand_computed_three_class_example():
    # class a: TP 2, FP 0, FN 1 -> P 1, R 2/3, F1 0.8
    # class b: TP 2, FP 2, FN 0 -> P 1/2, R 1, F1 2/3
    # class c: never predicted    -> P 0 (zero division), R 0, F1 0
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 1, 1])
    m = classification_metrics(y_true, y_pred, class_names=("a", "b", "c"))
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision_macro"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert m["recall_macro"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert m["f1_macro"] == pytest.approx((0.8 + 2 / 3 + 0) / 3)
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["per_class"]["a"]["f1"] == pytest.approx(0.8)
    assert [m["per_class"][k]["support"] for k in "abc"] == [3, 2, 1]
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 2, 0], [0, 1, 0]]  # rows = true, columns = predicted
    assert all(isinstance(m[k], float) for k in ("accuracy", "precision_macro", "recall_macro", "f1_macro"))


def test_nine_classes_by_default_and_a_perfect_score():
    y = np.arange(9).repeat(2)
    m = classification_metrics(y, y)
    assert list(m["per_class"]) == list(CLASS_NAMES)
    assert m["accuracy"] == m["precision_macro"] == m["recall_macro"] == m["f1_macro"] == 1.0
    assert np.array_equal(np.array(m["confusion_matrix"]), 2 * np.eye(9, dtype=int))


def test_confusion_matrix_keeps_all_classes_when_some_are_absent():
    m = classification_metrics(np.array([0, 8]), np.array([8, 8]))
    cm = np.array(m["confusion_matrix"])
    assert cm.shape == (9, 9) and cm[0, 8] == 1 and cm[8, 8] == 1 and cm.sum() == 2


def test_confusion_matrix_normalised_by_true_class():
    m = classification_metrics(np.array([0, 0, 0, 1, 1]), np.array([0, 0, 1, 1, 1]), class_names=("a", "b", "c"))
    assert m["confusion_matrix_normalized"] == [[0.6667, 0.3333, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]


def test_bootstrap_interval_is_sklearns_macro_f1_over_resampled_maps():
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 3, 200)
    y_pred = np.where(rng.random(200) < 0.7, y_true, rng.integers(0, 3, 200))
    low, high = bootstrap_f1_macro(y_true, y_pred, 3, resamples=120, seed=5)
    draws = np.random.default_rng(5)  # the same draws, 50 resamples at a time, scored by sklearn
    scores = [f1_score(y_true[i], y_pred[i], labels=[0, 1, 2], average="macro", zero_division=0)
              for size in (50, 50, 20) for i in draws.integers(0, 200, size=(size, 200))]
    assert [low, high] == pytest.approx(np.percentile(scores, [2.5, 97.5]))
    point = classification_metrics(y_true, y_pred, class_names=("a", "b", "c"))
    assert low < point["f1_macro"] < high and point["f1_macro_bootstrap_95"] == bootstrap_f1_macro(y_true, y_pred, 3)


def test_bootstrap_interval_narrows_with_more_maps_and_is_exact_for_a_perfect_model():
    rng = np.random.default_rng(0)
    widths = []
    for n in (100, 10_000):
        y_true = rng.integers(0, 9, n)
        low, high = bootstrap_f1_macro(y_true, np.where(rng.random(n) < 0.8, y_true, 0), 9)
        widths.append(high - low)
    assert widths[1] < widths[0] / 5  # ~1/sqrt(n): 10x narrower for 100x the maps
    every_class = np.repeat(np.arange(9), 50)
    assert bootstrap_f1_macro(every_class, every_class, 9) == [1.0, 1.0]
    assert bootstrap_f1_macro(np.array([], dtype=int), np.array([], dtype=int), 9) is None
