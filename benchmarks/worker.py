"""`python -m benchmarks.worker`: a long-lived process that runs either side's real `fit(cfg)` on command.

One JSON line in (the side and its training flags), one JSON line out (what the run recorded, plus this block's
wall and CPU time). Both sides are imported once, in the same process: a process runs at its own speed on a
shared VM (where its memory landed; ±6 % between processes here), and blocks of both sides in one process share
it, so it cancels in their ratio. The orchestrator (benchmarks/blocks.py) never runs two blocks at a time.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import io
import json
import os
import resource
import sys
import time

from benchmarks.runner import MODULES


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_block(fit, flags: list[str]) -> dict:
    """One fit(cfg) with its console output sent to stderr; the per-epoch record and the block's totals."""
    from shared.cli import parse_config

    if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
        raise TypeError(f"flags must be a list of strings, not {flags!r}"[:200])
    message = io.StringIO()
    try:  # argparse writes to both (--help to stdout): neither may reach the reply channel
        with contextlib.redirect_stderr(message), contextlib.redirect_stdout(message):
            cfg = parse_config("worker", "", flags)
    except SystemExit as end:  # a bad flag: argparse's last line is the block's error
        lines = message.getvalue().strip().splitlines()
        if end.code == 0 or not lines:  # --help: the parser printed its help and stopped
            raise ValueError(f"the flags ended the parser without a run ({' '.join(flags)[:100]})") from None
        raise ValueError(lines[-1]) from None
    if cfg.compile:  # each block compiles its own model from a clean slate (the on-disk kernel cache stays warm)
        import torch

        torch._dynamo.reset()
    gc.collect()  # the previous block's garbage (either side's) is collected here, untimed, not inside this block
    wall, cpu = time.perf_counter(), _cpu_seconds()
    with contextlib.redirect_stdout(sys.stderr):
        result = fit(cfg)
    return {"ok": True, "history": result.history, "steps_per_epoch": result.steps_per_epoch,
            "final_weights_sha256": result.final_weights_sha256, "block_wall_seconds": time.perf_counter() - wall,
            "block_cpu_seconds": _cpu_seconds() - cpu}


def run_floor(flags: list[str]) -> dict:
    """The floor of one setting's configuration (benchmarks/floor.py), or its error."""
    import torch

    from benchmarks.floor import cpu_floor, gpu_floor
    from shared.cli import parse_config

    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            cfg = parse_config("worker", "", [*flags, "--output-dir", "unused"])
        gpu = cfg.accelerator == "gpu" and torch.cuda.is_available()
        return {"ok": True, **(gpu_floor(cfg) if gpu else cpu_floor(cfg, threads=torch.get_num_threads()))}
    except (Exception, SystemExit) as err:
        return {"ok": False, "error": f"{type(err).__name__}: {err}"[:300]}


def main() -> None:
    import torch

    # fixed: the orchestrator sets OMP_NUM_THREADS, and every block of both sides runs with it
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    fits = {side: importlib.import_module(f"{module}.train").fit for side, module in MODULES.items()}
    # what the imports made lives as long as the worker: freezing it makes the collection before each block
    # scan only that block's garbage (0.34 s a block over torch's and Lightning's objects here, ~0.03 s after)
    gc.collect()
    gc.freeze()
    out = sys.stdout
    print(json.dumps({"ready": sorted(fits), "threads": torch.get_num_threads()}), file=out, flush=True)
    for line in sys.stdin:
        try:
            request = json.loads(line)
            if "floor" in request:  # the step's own time, in this process: the blocks' speed is this process's
                print(json.dumps(run_floor(request["floor"])), file=out, flush=True)
                continue
            if request.get("side") not in fits:
                raise ValueError(f"unknown side {request.get('side')!r} (one of {', '.join(sorted(fits))})")
            reply = run_block(fits[request["side"]], request["flags"])
        except (Exception, SystemExit) as err:  # reported to the orchestrator, which records it; the worker stays up
            reply = {"ok": False, "error": f"{type(err).__name__}: {err}"[:300]}
        print(json.dumps(reply), file=out, flush=True)


if __name__ == "__main__":
    main()
