"""pytest-benchmark on each side's real fit(cfg), in this process: a regression between two commits shows in
`pytest benchmarks --benchmark-compare` (runs are saved under the report folder's pytest-benchmark/)."""

from __future__ import annotations

import contextlib
import importlib
import io
import itertools

import pytest

from benchmarks.blocks import per_step
from benchmarks.profiles import TINY_FLAGS, Profile
from benchmarks.runner import MODULES, SIDES
from benchmarks.suite import block_flags
from shared.cli import parse_config

ROUNDS = {"smoke": 1}  # other profiles: 2 (the suite's blocks carry the statistics; these catch regressions)


def _flags(profile: Profile, setting: str, output_dir: str) -> list[str]:
    extra = [*TINY_FLAGS, "--samples-per-class", str(profile.blocks.fixed_samples_per_class)] if setting == "fixed" else []
    # one epoch per call: the call is a short fit, dominated by its steps (the suite's blocks give the statistics)
    return [*block_flags(profile, "cpu"), *extra, "--epochs", "1", "--output-dir", output_dir]


@pytest.mark.parametrize("setting", ["step", "fixed"])
@pytest.mark.parametrize("side", SIDES)
def test_fit_block(benchmark, profile: Profile, side: str, setting: str, tmp_path) -> None:
    """One barebones epoch of the profile's step (`step`) or of the near-zero-cost step (`fixed`), on the CPU."""
    if profile.needs_real_data or profile.blocks is None:
        pytest.skip("micro-benchmarks use synthetic data and the block settings; run them with the seed profile")
    fit = importlib.import_module(f"{MODULES[side]}.train").fit
    steps, calls = [], itertools.count()

    def run() -> None:
        # a folder per call: a run refuses a folder that holds another run's outputs
        cfg = parse_config("microbench", "", _flags(profile, setting, str(tmp_path / f"call-{next(calls)}")))
        with contextlib.redirect_stdout(io.StringIO()):
            steps.append(per_step({"history": (result := fit(cfg)).history, "steps_per_epoch": result.steps_per_epoch}))

    benchmark.group = f"fit, one epoch: {setting}"
    benchmark.pedantic(run, rounds=ROUNDS.get(profile.name, 2), warmup_rounds=1, iterations=1)
    benchmark.extra_info.update(side=side, setting=setting, steps=steps[-1]["steps"],
                                us_per_step_wall=[1e6 * s["wall"] for s in steps],
                                us_per_step_cpu=[1e6 * s["cpu"] for s in steps])
    assert steps and all(s["wall"] > 0 for s in steps)
