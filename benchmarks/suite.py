"""The measurement plan: which processes run, in which order, and the few in-process measurements."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import platform
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.blocks import FEATURE_ARMS, RATIO_ARMS, Setting, run_settings
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
    for r in range(profile.rounds):
        for side in _pairs(r):
            add(side, "end_to_end", "full", r, profile.base_seed + r, base)
    return records


def block_settings(profile: Profile, accelerator: str) -> list[Setting]:
    """The interleaved-block settings: per-step ratio + A/A, near-zero-cost step, features, ratio vs step time."""
    b = profile.blocks_for(accelerator)
    tiny = (*TINY_FLAGS, "--samples-per-class", str(b.fixed_samples_per_class))
    settings = [Setting("step", (), RATIO_ARMS, b.rounds, b.generations),
                Setting("fixed", tiny, RATIO_ARMS, b.rounds, b.generations),
                # on the near-zero-cost step too: what is left of a feature there is its own cost, not the model's
                Setting("features", tiny, FEATURE_ARMS, b.feature_rounds)]
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
    return run_settings(block_settings(profile, accelerator), block_flags(profile, accelerator),
                        profile.blocks_for(accelerator).threads, work_dir, profile.base_seed, profile.timeout_s, say,
                        profile.blocks_for(accelerator).warmup_rounds)


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
        entry = {"imports": {side: [] for side in SIDES}, "runs": []}
        raw["accelerators"][acc] = entry
        for r in range(max(profile.rounds, 2)):
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
        save(raw)
    return raw


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

