"""`python -m benchmarks.worker SIDE`: a long-lived process that runs the side's real `fit(cfg)` on command.

One JSON line in (the training flags), one JSON line out (what the run recorded, plus this block's wall and
CPU time). The side is imported once, so a block measures training, not interpreter start-up; the
orchestrator (benchmarks/blocks.py) never lets two workers run at the same time.
"""

from __future__ import annotations

import contextlib
import importlib
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

    cfg = parse_config("worker", "", flags)
    wall, cpu = time.perf_counter(), _cpu_seconds()
    with contextlib.redirect_stdout(sys.stderr):
        result = fit(cfg)
    return {"ok": True, "history": result.history, "steps_per_epoch": result.steps_per_epoch,
            "final_weights_sha256": result.final_weights_sha256, "block_wall_seconds": time.perf_counter() - wall,
            "block_cpu_seconds": _cpu_seconds() - cpu}


def main(side: str) -> None:
    import torch

    # equal and fixed on both sides: the orchestrator sets OMP_NUM_THREADS for every worker
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    fit = importlib.import_module(f"{MODULES[side]}.train").fit
    out = sys.stdout
    print(json.dumps({"ready": side, "threads": torch.get_num_threads()}), file=out, flush=True)
    for line in sys.stdin:
        try:
            reply = run_block(fit, json.loads(line)["flags"])
        except (Exception, SystemExit) as err:  # reported to the orchestrator, which records it; the worker stays up
            reply = {"ok": False, "error": f"{type(err).__name__}: {err}"[:300]}
        print(json.dumps(reply), file=out, flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
