"""Benchmark profiles: what each `pytest benchmarks --profile NAME` trains and how often."""

from __future__ import annotations

import os
from dataclasses import dataclass

REAL_DATA_ENV = "WM811K_PATH"


@dataclass(frozen=True)
class Variant:
    """A speed variant: extra flags applied to both sides (rows of the variants table)."""

    name: str
    flags: tuple[str, ...]
    devices: tuple[str, ...] = ("cpu", "gpu")  # where it is measured
    processes: int = 1  # > 1: DDP, launched by torchrun (plain) or the Trainer (Lightning)
    rounds: int | None = None  # None: the profile's variant_rounds
    epochs: int | None = None  # None: the profile's variant_epochs


# a near-zero-cost step (1-channel CNN on 8x8 maps, batch 1): what remains per step is the loop's own cost
TINY_FLAGS = ("--base-channels", "1", "--image-size", "8", "--batch-size", "1")


@dataclass(frozen=True)
class Blocks:
    """The interleaved-block protocol (benchmarks/blocks.py): rounds per setting and the settings' sizes."""

    # per-step ratio and fixed cost: A/B/A-A rounds. On the 2-core VM one block's time varies ~10 % (log SD of a
    # round's ratio), and a process runs at its own speed (~6 %, where its memory landed; it persisted over 60
    # rounds, so three side-per-process workers read Lightning 7 % "faster" with a CI that missed it). All arms
    # run in one process, and the rounds are spread over `generations` fresh processes: the interval is over
    # their means (n = generations), so what differs between processes is inside it. 50 rounds in 10 processes
    # gave ±1.7 % and ±3.0 % on two days; 80 in 16 gave ±2.6 % on a noisier one (a round's log ratio SD 0.087,
    # and ~0.03 of the ratio itself differing between processes) but took 17 minutes. 5 rounds per process is
    # about the most precision per minute here, and 12 processes what the 15-minute budget holds
    rounds: int = 60
    generations: int = 12
    warmup_rounds: int = 1  # at the start of every process's share of a setting, left out (one-off costs)
    epochs: int = 1  # per block; every epoch of a block is timed (the worker is already warm)
    # one intra-op thread in the worker: with 2 threads on 2 shared cores, one descheduled thread stalls every
    # parallel region at its barrier (blocks measured 9 ms and 560 ms per step with the same flags); one
    # thread's CPU time is what the step itself costs, whatever else the machine runs
    threads: int = 1
    fixed_samples_per_class: int = 20  # the near-zero-cost setting: 126 steps per epoch at batch 1
    feature_rounds: int = 12  # the price list: 19 arms (barebones, full, full without each feature, cosine; 3 sides)
    sweep: tuple[tuple[str, ...], ...] = ()  # extra settings for ratio vs step time (Lightning, plain only)
    sweep_rounds: int = 3
    fixed: bool = True  # the near-zero-cost step's ratio and fixed cost
    features: bool = True  # the price list: every feature alone, on each side and arm
    # more step settings with the three arms over the generations (name, flags), e.g. a large batch on the device
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # the fastest configuration (compiled with CUDA graphs, ...): its first `fastest_skip` epochs (compilation,
    # graph recording) are left out of the time per step and reported as its warm-up; generation 0 only
    fastest: tuple[str, ...] = ()
    fastest_rounds: int = 2
    fastest_epochs: int = 4
    fastest_skip: int = 1
    prefetch: bool = False  # start the next worker while one measures (a many-core host only)


@dataclass(frozen=True)
class Profile:
    """One benchmark setting: the training flags, the repetitions and the time limits."""

    name: str
    train_flags: tuple[str, ...]  # the full-feature run, as a user would start it
    rounds: int  # timed A/B rounds after one warm-up round; round r uses seed base_seed + r
    variant_epochs: int  # fixed-length fresh-process runs of the variants table
    variant_rounds: int
    gpu_variant_rounds: int | None = None  # GPU time is lent by the minute: fewer rounds there
    gpu_rounds: int | None = None  # end-to-end rounds on the GPU (None: rounds)
    gpu_checks: bool = False  # on a GPU: run tests/test_gpu.py last, its log into the report
    blocks: Blocks | None = Blocks()  # None: no interleaved blocks (the per-step overhead is another profile's job)
    gpu_blocks: Blocks | None = None  # None: the same as on the CPU
    variants: tuple[Variant, ...] = ()
    warmup: bool = True  # one untimed round first (file cache, .pyc, allocator)
    timeout_s: int = 900  # per training process
    run_seconds: float | None = None  # one fresh run's expected seconds where the plan's seed-sized cost does not fit
    base_seed: int = 42
    needs_real_data: bool = False
    flop_batch: int = 32
    notes: str = ""

    def variant_rounds_for(self, accelerator: str) -> int:
        if accelerator == "gpu" and self.gpu_variant_rounds is not None:
            return self.gpu_variant_rounds
        return self.variant_rounds

    def rounds_for(self, accelerator: str) -> int:
        if accelerator == "gpu" and self.gpu_rounds is not None:
            return self.gpu_rounds
        return self.rounds

    def blocks_for(self, accelerator: str) -> Blocks | None:
        return self.gpu_blocks if accelerator == "gpu" and self.gpu_blocks is not None else self.blocks

    def flags_for(self, accelerator: str) -> list[str]:
        flags = list(self.train_flags) + ["--accelerator", accelerator]
        if self.needs_real_data:
            flags += ["--data", os.environ[REAL_DATA_ENV]]
        return flags


_DDP = Variant("ddp, 2 processes", (), devices=("cpu",), processes=2)
_BIG_BATCH = ("--batch-size", "256", "--samples-per-class", "2000")
_FAST = ("--precision", "bf16-mixed", "--channels-last")
_GRAPHS = ("--compile", "--compile-mode", "reduce-overhead", "--fused-optimizer")

PROFILES = {
    "smoke": Profile(
        name="smoke",
        train_flags=("--samples-per-class", "12", "--image-size", "32", "--epochs", "2", "--batch-size", "16",
                     "--base-channels", "8"),
        rounds=2, variant_epochs=2, variant_rounds=1, timeout_s=300, warmup=False,
        # the fewest rounds that give an interval, in one process (the unit tests run two), no sweep: CI has ~3
        # minutes for all of it
        # (no warm-up round either: its numbers are not read, and the unit tests cover the warm-up logic)
        blocks=Blocks(rounds=5, generations=1, warmup_rounds=0, fixed_samples_per_class=8, feature_rounds=2,
                      # the GPU plan's steady-state logic, on the CPU: its first epoch left out
                      fastest=("--channels-last",), fastest_rounds=1, fastest_epochs=2,
                      extra=(("batch 8, data on device", ("--batch-size", "8", "--data-on-device")),)),
        variants=(_DDP,),
        notes="CI check of the harness: tiny data, numbers are not meaningful",
    ),
    "seed": Profile(
        name="seed",
        train_flags=("--samples-per-class", "100", "--image-size", "32", "--epochs", "30", "--batch-size", "32",
                     "--patience", "5"),
        rounds=3, variant_epochs=3, variant_rounds=1, warmup=False,
        blocks=Blocks(sweep=(("--batch-size", "4", "--base-channels", "8"), ("--batch-size", "128"))),
        # GPU time is lent by the minute: the whole GPU plan (checks included) must fit 6 minutes. The blocks are
        # the measurement there: batch 32 and batch 256 with the data on the device, each with the three arms,
        # over 5 worker processes (each imported while the one before measures), and the fastest configuration;
        # the price list and the near-zero-cost step are the CPU's (one GPU block of those is ~launch-bound)
        # every timed figure covers >= 200 steps per arm over the 5 processes: two epochs a block at batch 32
        # (20 steps each), one at batch 256 (49 steps)
        gpu_blocks=Blocks(rounds=5, generations=5, epochs=2, fixed=False, features=False, prefetch=True,
                          extra=(("batch 256, data on device", (*_BIG_BATCH, "--data-on-device", "--epochs", "1")),),
                          fastest=(*_BIG_BATCH, "--data-on-device", *_FAST, *_GRAPHS)),
        gpu_rounds=1, gpu_checks=True,
        variants=(
            # on the 2-core CPU autocast bf16 ran at ~8x the fp32 step time, so one short round shows it
            Variant("bf16-mixed", ("--precision", "bf16-mixed"), devices=("cpu",), rounds=1, epochs=2),
            Variant("channels_last", ("--channels-last",), devices=("cpu",), rounds=1),
            _DDP,
        ),
        notes="the seed tutorial's setting: 900 synthetic maps, batch 32, up to 30 epochs with early stopping",
    ),
    "real": Profile(
        name="real",
        # chosen on validation by benchmarks.frontier (reports/real/frontier.md; 2-core CPU, plain side, 3 seeds):
        # validation macro-F1 0.898 against 0.884 for the class-weighted recipe before it; its test 0.903 (0.880-0.928)
        train_flags=("--samples-per-class", "3000", "--image-size", "48", "--epochs", "30", "--batch-size", "64",
                     "--patience", "100", "--sampler", "balanced", "--sampler-power", "0.5", "--augment", "--tta",
                     "--monitor", "val_loss", "--lr-schedule", "cosine", "--channels-last"),
        rounds=1, variant_epochs=2, variant_rounds=1, warmup=False, timeout_s=2400,
        run_seconds=480.0,  # end to end on the idle 2-core CPU: 7.5-8 min a side
        # no interleaved blocks: a real-data block is an epoch of ~11,000 maps plus the natural-mix validation and
        # test (~30 s on 2 cores, and the batch-1 near-zero-cost setting would validate 4,600 maps one by one), so
        # even 5 rounds would double the profile; the per-step overhead is the seed profile's measurement
        blocks=None,
        needs_real_data=True,
        notes="WM-811K subset at 48x48, training split capped at 3,000 maps per class, drawn with weights (1 / class "
              "count) ** 0.5, flips and 90-degree rotations, cosine schedule over 30 epochs, test scored with the mean "
              "over 8 flips/rotations",
    ),
}
