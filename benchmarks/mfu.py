"""MFU denominators: the device's theoretical peak, and a measured matmul ceiling (best of k, wall and CPU time)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import torch

# dense datasheet figures, FLOP/s; matched on the name torch reports (the first match wins)
CUDA_PEAKS = (
    ("H100 PCIe", {"fp32": 51e12, "tf32": 378e12, "bf16": 756e12}),
    ("H100", {"fp32": 67e12, "tf32": 495e12, "bf16": 989e12}),  # SXM; NVL is close
    ("H200", {"fp32": 67e12, "tf32": 495e12, "bf16": 989e12}),  # the H100 SXM's compute, more memory
    ("A100", {"fp32": 19.5e12, "tf32": 156e12, "bf16": 312e12}),
    ("L4", {"fp32": 30.3e12, "tf32": 60e12, "bf16": 121e12}),
)


def cpu_peak(ceilings: list[dict] | None = None) -> dict:
    """cores x fp32 FLOP/cycle/core x clock, from /proc/cpuinfo; each assumption is stated in `basis`.

    FLOP/cycle/core = 2 FMA pipes x SIMD lanes x 2 (an FMA is a multiply and an add): 64 with AVX-512
    (Intel server cores with two 512-bit FMA units; Zen 4 runs AVX-512 at half that rate, so its peak is
    overstated and its MFU understated), 32 with AVX2+FMA (Zen 2-4, Haswell on), 16 with SSE only.
    Every logical CPU is counted as a core, and the clock is the highest one the kernel reports: both make the
    peak an upper bound, never an understatement. A VM often reports the base clock only; where a measured
    matmul did more FLOP per CPU-second than one core could at that clock, the clock it implies (turbo) is used.
    """
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    flags = set(re.search(r"^flags\s*:\s*(.*)$", info, re.M).group(1).split()) if "flags" in info else set()
    if "avx512f" in flags:
        isa, per_cycle = "AVX-512", 64
    elif {"avx2", "fma"} <= flags:
        isa, per_cycle = "AVX2+FMA", 32
    else:
        isa, per_cycle = "SSE", 16
    mhz = [float(m) for m in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", info, re.M)]
    ghz = max(mhz) / 1e3 if mhz else None
    max_freq = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if max_freq.is_file():
        ghz = max(ghz or 0.0, int(max_freq.read_text()) / 1e6)
    named = re.search(r"@\s*([\d.]+)\s*GHz", info)
    if named:
        ghz = max(ghz or 0.0, float(named.group(1)))
    reported = ghz
    per_cpu_second = [c["flops_per_cpu_second"] for c in ceilings or () if c.get("flops_per_cpu_second")]
    implied = max(per_cpu_second) / per_cycle / 1e9 if per_cpu_second else None
    clock = f"{ghz:.2f} GHz (highest clock reported)" if ghz else "clock not reported"
    if implied and implied > (ghz or 0.0):
        ghz, clock = implied, f"{implied:.2f} GHz (implied by the measured matmul; {reported or 0:.2f} GHz reported)"
    cores = os.cpu_count() or 1
    peak = cores * per_cycle * ghz * 1e9 if ghz else None
    return {"fp32": peak, "isa": isa, "flops_per_cycle_per_core": per_cycle, "cores": cores, "ghz": ghz,
            "reported_ghz": reported,
            "basis": f"{cores} logical CPUs x {per_cycle} fp32 FLOP/cycle ({isa}: 2 FMA pipes x lanes x 2) x {clock}"}


def cuda_peak(name: str) -> dict:
    for key, peaks in CUDA_PEAKS:
        if key.lower() in name.lower():
            return {**peaks, "basis": f"{key} datasheet, dense"}
    return {"fp32": None, "basis": f"no datasheet figure for {name!r}"}


def device_peak(accelerator: str, ceilings: list[dict] | None = None) -> dict:
    return cuda_peak(torch.cuda.get_device_name(0)) if accelerator == "gpu" else cpu_peak(ceilings)


def matmul_ceiling(accelerator: str, n: int = 4096, repeats: int = 5) -> dict:
    """Best of `repeats` timed fp32 n x n matmuls with the training's thread count: FLOP/s in wall and CPU time.

    On CUDA this is plain fp32 (torch's default: no TF32 for matmuls), the precision the runs train in.
    """
    device = torch.device("cuda" if accelerator == "gpu" else "cpu")
    if device.type == "cuda":
        n = max(n, 8192)  # a 4096 matmul is too short to fill an H100
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    torch.matmul(a, b)  # warm-up: kernel choice, page faults
    walls, cpus = [], []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter(), time.process_time()
        torch.matmul(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    flops, threads = 2 * n**3, torch.get_num_threads()
    return {"n": n, "dtype": "float32", "repeats": repeats, "threads": threads,
            "wall_seconds": walls, "cpu_seconds": cpus, "flops_per_s": flops / min(walls),
            # per CPU-second (all threads' CPU time summed): what a core did while it ran, time stolen by other
            # processes excluded; spinning threads count, so it is a lower bound of a core's rate
            "flops_per_cpu_second": flops / min(cpus) if device.type == "cpu" else None}
