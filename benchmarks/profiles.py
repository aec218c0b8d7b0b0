"""Benchmark profiles: what each `pytest benchmarks --profile NAME` trains and how often."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

REAL_DATA_ENV = "WM811K_PATH"


@dataclass(frozen=True)
class Variant:
    """A speed variant: extra flags applied to both sides (rows of the variants table)."""

    name: str
    flags: tuple[str, ...]
    devices: tuple[str, ...] = ("cpu", "gpu")  # where it is measured
    processes: int = 1  # > 1: DDP, launched by torchrun (plain) or the Trainer (Lightning)
    rounds: int | None = None  # None: the profile's decomposition_rounds
    epochs: int | None = None  # None: the profile's decomposition_epochs


@dataclass(frozen=True)
class Profile:
    """One benchmark setting: the training flags, the repetitions and the time limits."""

    name: str
    train_flags: tuple[str, ...]  # the full-feature run, as a user would start it
    rounds: int  # timed A/B rounds after one warm-up round; round r uses seed base_seed + r
    decomposition_epochs: int  # fixed-length runs for the overhead and variant tables
    decomposition_rounds: int
    gpu_decomposition_rounds: int | None = None  # GPU time is lent by the minute: fewer rounds there
    variants: tuple[Variant, ...] = ()
    warmup: bool = True  # one untimed round first (file cache, .pyc, allocator)
    timeout_s: int = 900  # per training process
    base_seed: int = 42
    needs_real_data: bool = False
    flop_batch: int = 32
    notes: str = ""
    extra: dict = field(default_factory=dict)

    def decomposition_rounds_for(self, accelerator: str) -> int:
        if accelerator == "gpu" and self.gpu_decomposition_rounds is not None:
            return self.gpu_decomposition_rounds
        return self.decomposition_rounds

    def flags_for(self, accelerator: str) -> list[str]:
        flags = list(self.train_flags) + ["--accelerator", accelerator]
        if self.needs_real_data:
            flags += ["--data", os.environ[REAL_DATA_ENV]]
        return flags


_DDP = Variant("ddp, 2 processes", (), devices=("cpu",), processes=2)
_GPU_ONLY = ("gpu",)
_BIG_BATCH = ("--batch-size", "256", "--samples-per-class", "2000")
_FAST = ("--precision", "bf16-mixed", "--channels-last")

PROFILES = {
    "smoke": Profile(
        name="smoke",
        train_flags=("--samples-per-class", "12", "--image-size", "32", "--epochs", "2", "--batch-size", "16",
                     "--base-channels", "8"),
        rounds=2, decomposition_epochs=2, decomposition_rounds=1, timeout_s=300,
        variants=(_DDP,),
        notes="CI check of the harness: tiny data, numbers are not meaningful",
    ),
    "seed": Profile(
        name="seed",
        train_flags=("--samples-per-class", "100", "--image-size", "32", "--epochs", "30", "--batch-size", "32",
                     "--patience", "5"),
        rounds=3, decomposition_epochs=6, decomposition_rounds=3, gpu_decomposition_rounds=2,
        variants=(
            # this CPU has no bf16 units: autocast emulates it at ~8x the fp32 step time, so one short round shows it
            Variant("bf16-mixed", ("--precision", "bf16-mixed"), devices=("cpu",), rounds=1, epochs=2),
            Variant("channels_last", ("--channels-last",), devices=("cpu",), rounds=2),
            Variant("bf16-mixed + channels_last", ("--precision", "bf16-mixed", "--channels-last"), devices=_GPU_ONLY),
            Variant("torch.compile", ("--compile",), devices=_GPU_ONLY, rounds=1),
            Variant("data on device", ("--data-on-device",), devices=_GPU_ONLY),
            # batch 256 on the seed's 630 training maps would be 3 steps an epoch: 20x the maps gives 50
            Variant("batch 256, 12,600 maps", _BIG_BATCH, devices=_GPU_ONLY),
            Variant("batch 256, 12,600 maps, bf16-mixed + channels_last", (*_BIG_BATCH, *_FAST), devices=_GPU_ONLY),
            Variant("batch 256, 12,600 maps, data on device", (*_BIG_BATCH, "--data-on-device"), devices=_GPU_ONLY),
            Variant("batch 256, 12,600 maps, data on device, bf16-mixed + channels_last",
                    (*_BIG_BATCH, "--data-on-device", *_FAST), devices=_GPU_ONLY),
            Variant("batch 256, 12,600 maps, data on device, bf16-mixed + channels_last, compile (CUDA graphs)",
                    (*_BIG_BATCH, "--data-on-device", *_FAST, "--compile", "--compile-mode", "reduce-overhead"),
                    devices=_GPU_ONLY, rounds=1),
            dataclasses.replace(_DDP, rounds=2),
        ),
        notes="the seed tutorial's setting: 900 synthetic maps, batch 32, up to 30 epochs with early stopping",
    ),
    "real": Profile(
        name="real",
        train_flags=("--samples-per-class", "3000", "--image-size", "32", "--epochs", "25", "--batch-size", "64",
                     "--patience", "5", "--class-weights", "--augment", "--monitor", "val_loss"),
        rounds=1, decomposition_epochs=2, decomposition_rounds=1, warmup=False, timeout_s=2400,
        needs_real_data=True,
        notes="WM-811K subset, each class capped at 3,000 maps, class-weighted loss, flips and 90-degree rotations",
    ),
}
