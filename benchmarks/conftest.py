"""`pytest benchmarks [--profile smoke|seed|real]`: run the comparison once per session, write the report."""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from benchmarks.profiles import PROFILES, REAL_DATA_ENV, Profile
from benchmarks.report import partial_path, render_markdown, write_report
from benchmarks.runner import ROOT
from benchmarks.suite import run_suite
from benchmarks.summary import summarize
from shared.runtime import atomic_write_text


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("wafer-bench")
    group.addoption("--profile", choices=sorted(PROFILES), default="seed", help="benchmark profile (default: seed)")
    group.addoption("--bench-accelerators", default="auto",
                    help="comma-separated cpu,gpu; 'auto' = cpu, plus gpu when CUDA is available")
    group.addoption("--report-dir", default=None,
                    help="where to write the report (default reports/<profile>, reports/<profile>-<gpu> with a GPU)")


MICROBENCH_DIR = "pytest-benchmark"  # inside the report folder; write_report keeps it across reruns


def pytest_configure(config: pytest.Config) -> None:
    """Save pytest-benchmark's runs into the report folder, so `--benchmark-compare` compares two commits there."""
    option = config.option
    if not hasattr(option, "benchmark_storage") or getattr(option, "benchmark_disable", False):
        return
    if option.benchmark_storage == "file://./.benchmarks":  # pytest-benchmark's default: not given
        profile = PROFILES[option.profile]
        folder = option.report_dir or _default_report_dir(profile, _accelerators(option.bench_accelerators))
        option.benchmark_storage = f"file://{Path(folder) / MICROBENCH_DIR}"
    if not (option.benchmark_autosave or option.benchmark_save):
        from pytest_benchmark.utils import get_tag

        option.benchmark_autosave = get_tag()


@dataclass
class Suite:
    profile: Profile
    raw: dict
    summary: dict
    report_dir: Path


def _accelerators(option: str) -> list[str]:
    if option == "auto":
        return ["cpu", "gpu"] if torch.cuda.is_available() else ["cpu"]
    chosen = [a.strip() for a in option.split(",") if a.strip()]
    bad = [a for a in chosen if a not in ("cpu", "gpu")]
    if bad or not chosen:
        raise pytest.UsageError(f"--bench-accelerators: unknown {bad or option!r}; use cpu, gpu or auto")
    if "gpu" in chosen and not torch.cuda.is_available():
        raise pytest.UsageError("--bench-accelerators gpu: CUDA is not available on this machine")
    return chosen


def _default_report_dir(profile: Profile, accelerators: list[str]) -> Path:
    name = profile.name
    if "gpu" in accelerators:
        card = torch.cuda.get_device_name(0)
        name += "-" + re.sub(r"[^a-z0-9]+", "-", card.lower().replace("nvidia", "")).strip("-")
    return ROOT / "reports" / name


@pytest.fixture(scope="session")
def profile(request: pytest.FixtureRequest) -> Profile:
    chosen = PROFILES[request.config.getoption("--profile")]
    if chosen.needs_real_data:
        value = os.environ.get(REAL_DATA_ENV)
        if not value or not Path(value).is_file():
            pytest.skip(f"profile {chosen.name!r} needs the WM-811K file: set {REAL_DATA_ENV} (now {value!r})")
    return chosen


@pytest.fixture(scope="session")
def suite(request: pytest.FixtureRequest, profile: Profile, tmp_path_factory: pytest.TempPathFactory) -> Suite:
    """Every training process of the profile, run once; the report is written before any check runs."""
    config = request.config
    accelerators = _accelerators(config.getoption("--bench-accelerators"))
    report_dir = Path(config.getoption("--report-dir") or _default_report_dir(profile, accelerators))
    terminal = config.pluginmanager.get_plugin("terminalreporter")

    capture = config.pluginmanager.get_plugin("capturemanager")

    def say(line: str) -> None:  # progress as it happens, also into a file (pytest would capture it)
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            if terminal:
                terminal.write_line(line)
                terminal.flush()
            else:
                print(line, flush=True)

    say(f"\nwafer-bench: profile {profile.name}, accelerators {accelerators}, report -> {report_dir}")
    partial = partial_path(report_dir)
    raw = run_suite(profile, accelerators, tmp_path_factory.mktemp("runs"), say,
                    save=lambda raw: atomic_write_text(partial, json.dumps(raw)))
    summary = summarize(raw)
    write_report(raw, summary, report_dir)
    partial.unlink(missing_ok=True)
    say(render_markdown(raw, summary))
    return Suite(profile, raw, summary, report_dir)
