"""The embedded synthetic WM-811K-style generator."""

from __future__ import annotations

import numpy as np
import pytest

from shared.config import CLASS_NAMES
from shared.synthetic import MIN_MAPS_PER_CLASS, WM811K_CLASS_COUNTS, class_counts, fail_fraction, generate_wafer_maps, wafer_grid

# per-class median fail fraction (failed dies / dies) of real WM-811K maps
REAL_MEDIANS = {"Center": 0.25, "Donut": 0.26, "Edge-Loc": 0.16, "Edge-Ring": 0.14, "Loc": 0.15,
                "Near-full": 0.87, "Random": 0.48, "Scratch": 0.09, "none": 0.15}


@pytest.fixture(scope="module")
def maps_200():
    return generate_wafer_maps(200, True, seed=3)


def test_same_seed_gives_bit_identical_maps():
    a_maps, a_labels = generate_wafer_maps(5, True, seed=11)
    b_maps, b_labels = generate_wafer_maps(5, True, seed=11)
    assert np.array_equal(a_labels, b_labels)
    assert all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(a_maps, b_maps, strict=True))


def test_other_seed_gives_other_maps():
    a_maps, _ = generate_wafer_maps(5, True, seed=11)
    b_maps, _ = generate_wafer_maps(5, True, seed=12)
    differ = sum(a.shape != b.shape or not np.array_equal(a, b) for a, b in zip(a_maps, b_maps))
    assert differ >= len(a_maps) - 2  # a map can coincide by chance, not most of them


def test_balanced_counts():
    maps, labels = generate_wafer_maps(100, True)
    assert len(maps) == 900 and labels.shape == (900,) and labels.dtype == np.int64
    assert np.bincount(labels).tolist() == [100] * 9
    assert len(CLASS_NAMES) == 9


def test_unbalanced_keeps_wm811k_proportions():
    counts = class_counts(1000, balance_classes=False)
    largest = max(WM811K_CLASS_COUNTS.values())
    assert counts["none"] == 1000 and max(counts, key=counts.get) == "none"
    for name in CLASS_NAMES:
        expected = round(1000 * WM811K_CLASS_COUNTS[name] / largest)
        assert counts[name] == max(MIN_MAPS_PER_CLASS, expected), name
    assert counts["Edge-Ring"] > counts["Edge-Loc"] > counts["Center"] > counts["Loc"] > counts["Scratch"]
    _, labels = generate_wafer_maps(1000, False, seed=1)
    assert np.bincount(labels).tolist() == [counts[n] for n in CLASS_NAMES]


def test_unbalanced_small_counts_keep_a_floor_for_stratified_splits():
    counts = class_counts(100, balance_classes=False)
    assert min(counts.values()) == MIN_MAPS_PER_CLASS  # Near-full would otherwise round to 0 -> 1
    assert counts["none"] == 100
    assert class_counts(4, balance_classes=False) == {n: 4 for n in CLASS_NAMES}  # never above the largest


def test_codes_and_circular_wafer(maps_200):
    maps, _ = maps_200
    for wafer in maps[::7]:
        assert wafer.dtype == np.uint8 and wafer.ndim == 2
        assert set(np.unique(wafer).tolist()) <= {0, 1, 2}
        assert wafer[0, 0] == wafer[0, -1] == wafer[-1, 0] == wafer[-1, -1] == 0
        centre = wafer[wafer.shape[0] // 2, wafer.shape[1] // 2]
        assert centre in (1, 2)
        # the die mask is the wafer's disc of its (possibly rotated) grid
        on_wafer, _, _ = wafer_grid(wafer.shape)
        assert np.array_equal(wafer != 0, on_wafer)


def test_grid_sizes_vary(maps_200):
    maps, labels = maps_200
    assert len({m.shape for m in maps}) >= 6
    # size must not leak the class: every class sees several grid shapes
    for label in range(9):
        assert len({m.shape for m, y in zip(maps, labels) if y == label}) >= 4


def test_median_fail_fraction_matches_real_wm811k(maps_200):
    maps, labels = maps_200
    for label, name in enumerate(CLASS_NAMES):
        median = np.median([fail_fraction(m) for m, y in zip(maps, labels) if y == label])
        assert abs(median - REAL_MEDIANS[name]) <= 0.05, f"{name}: {median:.3f} vs {REAL_MEDIANS[name]}"


def test_fail_fraction():
    wafer = np.array([[0, 1, 2], [2, 2, 1], [0, 0, 0]], dtype=np.uint8)
    assert fail_fraction(wafer) == pytest.approx(3 / 5)
    assert fail_fraction(np.zeros((3, 3), np.uint8)) == 0.0
