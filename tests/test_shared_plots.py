"""The two PNG figures."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pytest

from shared.plots import plot_confusion_matrix, plot_sample_predictions

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    assert path.read_bytes()[:8] == PNG_MAGIC
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4) and min(image.shape[:2]) > 100
    assert image[..., :3].std() > 0.01  # not blank
    return image


def test_confusion_matrix_png(tmp_path):
    matrix = np.arange(81).reshape(9, 9)
    matrix[3] = 0  # a class with no test maps must not divide by zero
    path = tmp_path / "plots" / "confusion_matrix.png"
    plot_confusion_matrix(matrix.tolist(), path)
    image = assert_png(path)
    assert image.shape[1] > image.shape[0] * 0.8  # roughly square figure
    assert sorted(p.name for p in path.parent.iterdir()) == ["confusion_matrix.png"]


@pytest.mark.parametrize("n", [1, 7, 18])
def test_sample_predictions_png(tmp_path, n):
    rng = np.random.default_rng(0)
    maps = rng.integers(0, 3, size=(n, 1, 16, 16)) / 2.0
    y_true = rng.integers(0, 9, size=n)
    y_pred = y_true.copy()
    y_pred[::2] = (y_pred[::2] + 1) % 9
    path = tmp_path / "sample_predictions.png"
    plot_sample_predictions(maps, y_true, y_pred, path)
    image = assert_png(path)
    if n == 18:
        assert image.shape[1] > image.shape[0]  # 6 columns x 3 rows
    assert [p.name for p in tmp_path.iterdir()] == ["sample_predictions.png"]  # no temp files left
