"""Run each implementation through its real entry point in a fresh process and collect what it measured."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIDES = ("plain", "lightning")
SIDE_NAMES = {"plain": "plain PyTorch", "lightning": "Lightning"}
MODULES = {"plain": "plain_pytorch", "lightning": "lightning_impl"}


@dataclass
class RunRecord:
    """One training process: how it was started, how long it took, what it wrote."""

    side: str
    kind: str  # warmup | end_to_end | variant
    label: str  # e.g. "full", "barebones", a variant name
    accelerator: str
    round: int
    seed: int
    command: list[str]
    processes: int = 1
    ok: bool = False
    error: str | None = None
    log_tail: list[str] | None = None  # a failed run's last console lines, for the reader of the raw JSON
    retried_after: str | None = None  # a DDP launch that failed once and was started again: the first error
    wall_seconds: float | None = None  # launch to exit: interpreter start, imports, data, fit, test, outputs
    launch_unix: float | None = None
    max_rss_bytes: int | None = None  # of the launched process (for DDP: the launcher only)
    cpu_seconds: float | None = None  # user + system CPU time of the process and its waited-for children (wait4)
    metrics: dict | None = None  # the run's metrics.json

    def to_dict(self) -> dict:
        return asdict(self)


def train_command(side: str, flags: list[str], processes: int = 1) -> list[str]:
    """The command a user would type; DDP on the plain side goes through torchrun."""
    module = f"{MODULES[side]}.train"
    if processes == 1:
        return [sys.executable, "-m", module, *flags]
    if side == "plain":
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                "-m", module, *flags]
    return [sys.executable, "-m", module, *flags, "--strategy", "ddp", "--devices", str(processes)]


def _wait_with_timeout(proc: subprocess.Popen, timeout_s: float) -> tuple[int, object, bool]:
    """os.wait4 gives this child's own rusage (max RSS); a timer kills the process group at the limit."""
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:  # exited just now
            pass

    timer = threading.Timer(timeout_s, kill)
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage, timed_out.is_set()


def run_training(record: RunRecord, out_dir: Path, timeout_s: float, env: dict | None = None) -> RunRecord:
    """Start record.command with --output-dir out_dir, wait, and fill in timings, memory and metrics."""
    out_dir.mkdir(parents=True, exist_ok=True)
    command = [*record.command, "--output-dir", str(out_dir)]
    record.command = command
    log_path = out_dir / "console.log"
    with open(log_path, "wb") as log:
        record.launch_unix = time.time()
        start = time.perf_counter()
        proc = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, start_new_session=True)
        code, usage, timed_out = _wait_with_timeout(proc, timeout_s)
        record.wall_seconds = time.perf_counter() - start
    record.max_rss_bytes = usage.ru_maxrss * 1024  # Linux reports KiB
    record.cpu_seconds = usage.ru_utime + usage.ru_stime
    metrics_path = out_dir / "metrics.json"
    console = _lines(log_path) if timed_out or code != 0 else []  # read once, only for a failed run
    if timed_out or code != 0:
        record.log_tail = console[-LOG_TAIL_LINES:]
    if timed_out:
        record.error = f"timed out after {timeout_s:.0f} s"
    elif code != 0:
        record.error = f"exit {code}: {failure_reason(console)}"
    elif not metrics_path.is_file():
        record.error = "exited 0 but wrote no metrics.json"
    else:
        record.metrics = json.loads(metrics_path.read_text())
        record.ok = True
    return record


LOG_TAIL_LINES = 40
# the line that says why: the project's one-line error, or a Python exception (torchrun's own wrapper aside)
_CAUSE = re.compile(r"(^|\]:\s*)[\w.]+(Error|Exception)\b|: error: ")
_BANNER = re.compile(r"^[\s=\-]*$")


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text(errors="replace").splitlines() if line.strip()]


def failure_reason(lines: list[str]) -> str:
    """The line that says why a run failed: for a torchrun job the first failed rank's (its root cause), else
    the console's last error line, else its last line that is not a banner.

    torchrun ends a failed job with its own ChildFailedError and a box naming the root-cause rank; the other
    ranks' errors (gloo's "Connection closed by peer" once a peer died) are consequences, not the cause.
    """
    causes = [line for line in lines if _CAUSE.search(line) and "ChildFailedError" not in line]
    root = _torchrun_root_cause(lines)
    if root is not None:
        rank, exitcode, traceback = root
        if traceback.startswith("Signal"):  # killed: it printed nothing (the OOM killer, a kill -9)
            return f"rank {rank}: {traceback}"[:300]
        own = [line for line in causes if line.startswith(f"[rank{rank}]:")]
        own = own or [line for line in lines if line.startswith(f"[rank{rank}]:")]  # e.g. a KeyboardInterrupt
        unprefixed = [line for line in causes if not line.startswith("[rank")]  # the project's one-line error
        causes = own or unprefixed or [f"rank {rank}: exit code {exitcode}, with no error line of its own"]
    text = [line for line in lines if not _BANNER.match(line)]
    chosen = causes[-1] if causes else text[-1] if text else "(no output)"
    return chosen.strip()[:300]


def _torchrun_root_cause(lines: list[str]) -> tuple[str, str, str] | None:
    """(rank, exit code, traceback field) of the 'Root Cause' entry of torchrun's failure box, if any."""
    start = next((i for i, line in enumerate(lines) if line.startswith("Root Cause")), None)
    if start is None:
        return None
    fields = {}
    for line in lines[start + 1:]:
        if _BANNER.match(line):
            break
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    rank = fields.get("rank", "").split(" ")[0]
    exitcode = fields.get("exitcode", "?").split(" ")[0]
    return (rank, exitcode, fields.get("traceback", "")) if rank.isdigit() else None


def import_seconds(side: str) -> float:
    """Seconds to import the side's training module in a fresh interpreter (torch/lightning included)."""
    code = (f"import time; t = time.perf_counter(); import {MODULES[side]}.train; "
            "print(time.perf_counter() - t)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])
