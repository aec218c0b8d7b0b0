"""Fixtures shared by the unit tests: a tiny CPU config that trains in seconds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared.config import TrainConfig

REAL_DATA_ENV = "WM811K_PATH"
SIDES = ["plain_pytorch", "lightning_impl"]
# tiny() as command-line flags (add --epochs and --output-dir), for the tests that start a side's CLI
TINY_FLAGS = ["--samples-per-class", "12", "--image-size", "32", "--batch-size", "16", "--base-channels", "8",
              "--accelerator", "cpu", "--seed", "7"]


def tiny(output_dir: str | Path, **changes) -> TrainConfig:
    """9 classes x 12 maps at 32x32, 2 epochs, CPU, outputs in output_dir: trains in seconds."""
    return TrainConfig(samples_per_class=12, image_size=32, epochs=2, batch_size=16, base_channels=8,
                       patience=5, accelerator="cpu", output_dir=str(output_dir), seed=7).replace(**changes)


@pytest.fixture
def tiny_cfg(tmp_path: Path) -> TrainConfig:
    """tiny() with outputs under tmp_path."""
    return tiny(tmp_path / "run")


@pytest.fixture
def call_main(capsys: pytest.CaptureFixture):
    """Run a CLI's main(argv) in-process: (exit code, stdout, stderr)."""

    def call(main, *argv: str) -> tuple[int, str, str]:
        try:
            main(list(argv))
            code = 0
        except SystemExit as exit_info:
            code = exit_info.code
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return call


@pytest.fixture
def real_data_path() -> Path:
    """The WM-811K file named by $WM811K_PATH; skips (with the reason) when it is not given."""
    value = os.environ.get(REAL_DATA_ENV)
    if not value:
        pytest.skip(f"real WM-811K data not given: set {REAL_DATA_ENV} to an LSWMD-format pickle")
    path = Path(value)
    if not path.is_file():
        pytest.skip(f"{REAL_DATA_ENV}={value} does not exist")
    return path
