"""The measurement plan: which processes run, in which order, and the few in-process measurements."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.blocks import FASTEST_ARMS, FEATURE_ARMS, RATIO_ARMS, STEP_ARMS, Setting, run_settings
from benchmarks.loc import count_package
from benchmarks.mfu import device_peak, matmul_ceiling
from benchmarks.profiles import REAL_DATA_ENV, TINY_FLAGS, Profile
from benchmarks.runner import ROOT, SIDES, RunRecord, import_seconds, run_training, train_command
from shared.config import TrainConfig
from shared.model import build_model
from shared.wm811k import load_wm811k

# what sets a CPU's fp32/bf16 speed: SIMD width, FMA, bf16 dot products and AMX tiles (a virtual CPU's model name
# often says only "Intel Xeon Processor"; machines here differed ~8x in bf16 speed)
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16")


def machine_info() -> dict:
    """What the figures were measured on."""
    import lightning

    cpu, flags = platform.processor() or platform.machine(), []
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        lines = cpuinfo.read_text().splitlines()
        names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
        cpu = names[0] if names else cpu
        present = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
        flags = [f for f in CPU_FLAGS if f in present]
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else None
    return {"cpu": cpu, "cpu_flags": flags, "cores": os.cpu_count(), "memory_gib": round(memory / 2**30, 1) if memory else None,
            "gpu": gpu, "gpu_count": torch.cuda.device_count(), "python": platform.python_version(),
            "torch": torch.__version__, "lightning": lightning.__version__, "os": platform.platform(),
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def lines_of_code() -> dict:
    """Counts per file for both sides and shared/ (charged to neither)."""
    return {pkg: {path: vars(count) for path, count in count_package(ROOT / pkg).items()}
            for pkg in ("plain_pytorch", "lightning_impl", "shared")}


def flops_per_sample(profile: Profile, accelerator: str) -> float:
    """Training FLOPs (forward + backward) per sample of the profile's WaferCNN, by torch's counter."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = TrainConfig(**_config_from_flags(profile))
    model = build_model(cfg)
    x = torch.rand(profile.flop_batch, 1, cfg.image_size, cfg.image_size)
    y = torch.randint(0, 9, (profile.flop_batch,))
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() / profile.flop_batch


def _config_from_flags(profile: Profile) -> dict:
    """The TrainConfig fields the profile's flags set (image size and channels matter for FLOPs)."""
    flags = list(profile.train_flags)
    out = {}
    for name in ("image_size", "base_channels"):
        flag = "--" + name.replace("_", "-")
        if flag in flags:
            out[name] = int(flags[flags.index(flag) + 1])
    return out


def _pairs(round_: int) -> tuple[str, ...]:
    """A B in even rounds, B A in odd ones, so slow drift (thermal, cache) hits both sides alike."""
    return SIDES if round_ % 2 == 0 else SIDES[::-1]


def plan(profile: Profile, accelerator: str) -> list[RunRecord]:
    """Every training process of one accelerator, in execution order."""
    base = profile.flags_for(accelerator)
    fixed = [*base, "--epochs", str(profile.variant_epochs), "--patience", "1000000"]
    records = []

    def add(side, kind, label, round_, seed, flags, processes=1):
        command = train_command(side, [*flags, "--seed", str(seed)], processes)
        records.append(RunRecord(side, kind, label, accelerator, round_, seed, command, processes))

    if profile.warmup:
        for side in SIDES:
            add(side, "warmup", "full", -1, profile.base_seed, fixed)
    # the short variant runs first: a plan cut off by a time limit (a GPU lent by the minute) keeps them
    rounds = profile.variant_rounds_for(accelerator)
    for variant in profile.variants:
        if accelerator not in variant.devices:
            continue
        epochs = ["--epochs", str(variant.epochs)] if variant.epochs else []
        for r in range(variant.rounds or rounds):
            for side in _pairs(r):
                add(side, "variant", variant.name, r, profile.base_seed,
                    [*fixed, *epochs, "--barebones", *variant.flags], variant.processes)
    for r in range(profile.rounds_for(accelerator)):
        for side in _pairs(r):
            add(side, "end_to_end", "full", r, profile.base_seed + r, base)
    return records


def block_settings(profile: Profile, accelerator: str) -> list[Setting]:
    """The interleaved-block settings: the profile's step (three Lightning arms + A/A), the near-zero-cost step,
    the price list, more step settings, the fastest configuration and the ratio against step time."""
    b = profile.blocks_for(accelerator)
    tiny = (*TINY_FLAGS, "--samples-per-class", str(b.fixed_samples_per_class))
    settings = [Setting("step", (), STEP_ARMS, b.rounds, b.generations)]
    if b.fixed:
        settings.append(Setting("fixed", tiny, RATIO_ARMS, b.rounds, b.generations))
    if b.features:  # on the near-zero-cost step: what is left of a feature there is its own cost, not the model's
        settings.append(Setting("features", tiny, FEATURE_ARMS, b.feature_rounds))
    settings += [Setting(name, flags, STEP_ARMS, b.rounds, b.generations) for name, flags in b.extra]
    if b.fastest:
        settings.append(Setting("fastest", (*b.fastest, "--epochs", str(b.fastest_epochs)), FASTEST_ARMS,
                                b.fastest_rounds, skip_epochs=b.fastest_skip))
    settings += [Setting("sweep " + " ".join(flags), flags, RATIO_ARMS[:2], b.sweep_rounds) for flags in b.sweep]
    return settings


def block_flags(profile: Profile, accelerator: str) -> list[str]:
    """Every block's flags before its setting's: the profile's, fixed length, barebones, one seed."""
    b = profile.blocks_for(accelerator)
    # no plots: they are ~1 s of matplotlib after the test, the same on both sides, and a block that is mostly
    # training keeps its paired arms close in time (and leaves room for more rounds)
    return [*profile.flags_for(accelerator), "--epochs", str(b.epochs), "--patience", "1000000", "--barebones",
            "--no-plots", "--seed", str(profile.base_seed)]


def run_blocks(profile: Profile, accelerator: str, work_dir: Path, say: Callable[[str], None]) -> dict:
    """The block protocol on long-lived workers, each with the profile's (equal) thread count."""
    b = profile.blocks_for(accelerator)
    return run_settings(block_settings(profile, accelerator), block_flags(profile, accelerator), b.threads, work_dir,
                        profile.base_seed, profile.timeout_s, say, b.warmup_rounds, prefetch=b.prefetch,
                        floors=floor_settings(profile, accelerator))


def run_suite(profile: Profile, accelerators: list[str], work_dir: Path,
              say: Callable[[str], None] = print, save: Callable[[dict], None] = lambda raw: None) -> dict:
    """Run the whole plan; a failed process is recorded with its error and the plan goes on.

    `save(raw)` is called after every stage and every training process, so a suite killed part-way (a time
    limit) leaves the records it measured for `python -m benchmarks.report --partial`.
    """
    raw = {"profile": profile.name, "profile_notes": profile.notes, "machine": machine_info(),
           "protocol": {"rounds": profile.rounds, "warmup": profile.warmup, "threads": torch.get_num_threads(),
                        "train_flags": list(profile.train_flags),
                        "blocks": dataclasses.asdict(profile.blocks) if profile.blocks else None,
                        "gpu_blocks": dataclasses.asdict(profile.blocks_for("gpu")) if profile.blocks_for("gpu") else None},
           "lines_of_code": lines_of_code(), "accelerators": {}}
    if profile.needs_real_data:  # fill the preprocessed-data cache untimed, or the first run alone pays for it
        load_wm811k(os.environ[REAL_DATA_ENV], TrainConfig(**_config_from_flags(profile)).image_size)
    for acc in accelerators:
        say(describe_plan(profile, acc))
        entry = {"imports": {side: [] for side in SIDES}, "runs": [], "started_unix": time.time()}
        raw["accelerators"][acc] = entry
        for r in range(import_rounds(profile, acc)):
            for side in _pairs(r):
                entry["imports"][side].append(import_seconds(side))
        entry["ceiling_before"] = _soft(matmul_ceiling, acc)
        entry["flops_per_sample"] = flops_per_sample(profile, acc)
        entry["peak"] = _soft(lambda a: device_peak(a, [entry["ceiling_before"]]), acc)
        save(raw)
        if profile.blocks_for(acc) is not None:
            say(f"[{acc}] interleaved blocks")
            entry["blocks"] = run_blocks(profile, acc, work_dir / acc / "blocks", say)
            save(raw)
        records = plan(profile, acc)
        for i, record in enumerate(records):
            # DDP processes share the cores: give both sides the same thread budget (torchrun would set 1)
            threads = max(1, (os.cpu_count() or 2) // record.processes)
            env = {"OMP_NUM_THREADS": str(threads)} if record.processes > 1 else None
            out = work_dir / acc / f"{i:03d}-{record.side}-{record.kind}-{record.label.replace(' ', '_')}-r{record.round}"
            record = run_once_more_if_ddp(record, out, profile.timeout_s, env,
                                          lambda r, again="": _say_run(say, f"[{acc} {i + 1}/{len(records)}{again}]", r))
            entry["runs"].append(record.to_dict())
            save(raw)
        entry["ceiling_after"] = _soft(matmul_ceiling, acc)
        entry["peak"] = _soft(lambda a: device_peak(a, [entry["ceiling_before"], entry["ceiling_after"]]), acc)
        entry["measured_seconds"] = time.time() - entry["started_unix"]
        save(raw)
        if acc == "gpu" and profile.gpu_checks:  # last: behaviour, not speed (its processes share the card)
            say("[gpu] checks: pytest -m gpu tests/test_gpu.py")
            entry["gpu_checks"] = run_gpu_checks(profile.timeout_s)
            save(raw)
    return raw


def import_rounds(profile: Profile, accelerator: str) -> int:
    """Fresh-process import timings per side: on the CPU at least 2, on a GPU host as many as the e2e rounds."""
    return max(profile.rounds_for(accelerator), 2 if accelerator == "cpu" else 1)


def floor_settings(profile: Profile, accelerator: str) -> dict[str, list[str]]:
    """Each measured step setting's full flags (the sweeps and the price list have none of their own)."""
    base = block_flags(profile, accelerator)
    return {s.name: [*base, *s.flags] for s in block_settings(profile, accelerator)
            if s.name not in ("features",) and not s.name.startswith("sweep")}


def run_gpu_checks(timeout_s: float) -> dict:
    """tests/test_gpu.py in its own pytest process: exit status, time, its summary line and log."""
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "tests/test_gpu.py", "-q", "-rA", "-s",
                               "-p", "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
        code, log = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as err:
        code, log = None, f"timed out after {timeout_s} s\n{err.stdout or ''}"
    lines = [line for line in log.splitlines() if line.strip()]
    return {"exit": code, "seconds": time.perf_counter() - start, "summary": lines[-1] if lines else "", "log": log}


# seconds each part of a plan takes, as measured with this code (CPU: the 2-core EPYC VM; GPU: the H200 run of
# reports/seed-h200: its e2e pair took 15 + 26 s; "checks" is its 98 s less the evaluate process now overlapped)
COSTS = {"cpu": {"import": 5.0, "e2e": 20.0, "variant": 12.0, "worker": 8.0, "checks": 0.0,
                 "block": {"step": 1.1, "fixed": 0.5, "features": 0.7, "fastest": 2.0, "sweep": 1.0, "extra": 2.0}},
         "gpu": {"import": 12.0, "e2e": 20.5, "variant": 30.0, "worker": 25.0, "checks": 65.0,
                 "block": {"step": 0.8, "fixed": 1.0, "features": 1.0, "fastest": 12.0, "sweep": 1.0, "extra": 1.6}}}


def expected_seconds(profile: Profile, accelerator: str) -> dict[str, float]:
    """What the plan of one accelerator is expected to take, part by part (from COSTS)."""
    cost = COSTS[accelerator]
    b = profile.blocks_for(accelerator)
    out = {"imports": 2 * import_rounds(profile, accelerator) * cost["import"]}
    runs = plan(profile, accelerator)
    e2e = profile.run_seconds if profile.run_seconds and accelerator == "cpu" else cost["e2e"]
    out["fresh runs"] = sum(e2e if r.kind != "variant" else cost["variant"] for r in runs)
    if b is not None:
        settings = block_settings(profile, accelerator)
        gens = max(s.generations for s in settings)
        out["worker starts"] = cost["worker"] * (1 if b.prefetch else gens)
        out["blocks"] = sum(len(s.arms) * (s.rounds + s.generations * (0 if s.skip_epochs else b.warmup_rounds))
                            * cost["block"].get(s.name.split()[0], cost["block"]["extra"]) for s in settings)
    if accelerator == "gpu" and profile.gpu_checks:
        out["GPU checks"] = cost["checks"]
    return out


def describe_plan(profile: Profile, accelerator: str) -> str:
    """The plan in a few lines, with its expected time."""
    parts = expected_seconds(profile, accelerator)
    lines = [f"[{accelerator}] plan: expected {sum(parts.values()) / 60:.1f} min: "
             + ", ".join(f"{name} ~{sec:.0f} s" for name, sec in parts.items())]
    b = profile.blocks_for(accelerator)
    for s in block_settings(profile, accelerator) if b else ():
        lines.append(f"  blocks {s.name}: {len(s.arms)} arms x {s.rounds} rounds in {s.generations} process(es)"
                     + (f", first {s.skip_epochs} epoch(s) of each block left out" if s.skip_epochs else ""))
    return "\n".join(lines)


def run_once_more_if_ddp(record: RunRecord, out: Path, timeout_s: float, env: dict | None,
                         said: Callable[..., None]) -> RunRecord:
    """run_training; a failed multi-process launch is started once more in a fresh folder, its first error kept.

    A DDP launch can fail in its rendezvous or transport on a busy machine (a gloo launch has been seen to, once
    in many CI runs); a run that fails twice is a failure, and one that failed once says so in the report. Not
    started again: one process, a time-out (it would cost the limit twice), and the project's own one-line
    errors (a bad flag, too few maps for the ranks), which say what is wrong with the run, not the launch.
    """
    command = list(record.command)
    run_training(record, out, timeout_s, env)
    said(record)
    if record.ok or record.processes == 1 or record.error.startswith("timed out") or ": error: " in record.error:
        return record
    again = dataclasses.replace(record, command=command, error=None, log_tail=None, metrics=None,
                                retried_after=record.error)
    run_training(again, out.with_name(out.name + "-again"), timeout_s, env)
    said(again, " again")
    return again


def _say_run(say: Callable[[str], None], where: str, record: RunRecord) -> None:
    """One line per run, and a failed run's console tail (the whole cause, where one line is not enough)."""
    status = f"{record.wall_seconds:.1f} s" if record.ok else f"FAILED after {record.wall_seconds:.1f} s: {record.error}"
    say(f"{where} {record.side:9s} {record.kind:13s} {record.label:38s} r{record.round} {status}")
    for line in record.log_tail or ():
        say(f"    | {line}")


def _soft(measure: Callable[[str], dict], accelerator: str) -> dict:
    """A side measurement that records its error instead of ending the suite (the GPU path runs unattended)."""
    try:
        return measure(accelerator)
    except Exception as err:
        return {"error": f"{type(err).__name__}: {err}"[:300]}

