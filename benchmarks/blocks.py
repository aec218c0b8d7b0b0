"""Interleaved blocks: many short runs of each side's real fit(cfg), in long-lived workers, in random order.

A noisy machine drifts over seconds to minutes; a block is a few seconds, the arms of a round run back to
back in a shuffled order, and each statistic is paired within its round, so the drift cancels. The A/A arm
is a second plain worker doing exactly what the first does: its ratio shows the noise floor.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.runner import ROOT


@dataclass(frozen=True)
class Arm:
    """One kind of block: which worker runs it and the flags it adds to the setting's."""

    name: str  # e.g. "plain", "lightning", "plain A/A", "plain full"
    worker: str  # worker key: "plain", "plain_b" or "lightning"
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Setting:
    """A block protocol: flags shared by every arm, the arms, how many rounds."""

    name: str
    flags: tuple[str, ...]
    arms: tuple[Arm, ...]
    rounds: int


SIDE_OF_WORKER = {"plain": "plain", "plain_b": "plain", "lightning": "lightning"}
RATIO_ARMS = (Arm("plain", "plain"), Arm("lightning", "lightning"), Arm("plain A/A", "plain_b"))
# a block is one epoch: the cosine schedule runs there without warm-up (warm-up must leave steps after it)
_COSINE = ("--lr-schedule", "cosine", "--warmup-epochs", "0")
# each feature's switch (shared/config.py FEATURES): the cost of one is "full" against "full without" it
FEATURE_SWITCHES = {"TensorBoard logging": "--no-tensorboard", "progress bar": "--no-progress-bar",
                    "checkpoints": "--no-checkpoints", "early stopping": "--no-early-stopping"}


def feature_arms(side: str) -> tuple[Arm, ...]:
    """Barebones, full, full without each feature in turn, and barebones with the LR schedule, for one side."""
    full = ("--no-barebones",)
    return (Arm(side, side), Arm(f"{side} full", side, full),
            *(Arm(f"{side} full without {name}", side, (*full, flag)) for name, flag in FEATURE_SWITCHES.items()),
            Arm(f"{side} cosine", side, _COSINE))


FEATURE_ARMS = (*feature_arms("plain"), *feature_arms("lightning"))
# arms that train the same weights as the plain barebones arm of their setting (the features change no arithmetic:
# a block is one epoch, early stopping never fires at its patience), and those with the schedule
SAME_WEIGHTS = {"": ("plain", "lightning", "plain A/A",
                     *(a.name for a in FEATURE_ARMS if "full" in a.name)),
                "cosine": ("plain cosine", "lightning cosine")}


class Worker:
    """A `python -m benchmarks.worker SIDE` child; one block at a time, answers one JSON line per block."""

    def __init__(self, side: str, threads: int, log_path: Path, timeout_s: float) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout_s = timeout_s
        self.log = open(log_path, "ab")
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.worker", side], cwd=ROOT, env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log)
        self.ready = json.loads(self._read())

    def _read(self) -> str:
        timer = threading.Timer(self.timeout_s, self.proc.kill)  # a hung block ends the worker, not the suite
        timer.start()
        try:
            line = self.proc.stdout.readline()
        finally:
            timer.cancel()
        if not line:
            raise RuntimeError(f"worker exited (status {self.proc.poll()}); see {self.log.name}")
        return line

    def run(self, flags: list[str]) -> dict:
        self.proc.stdin.write(json.dumps({"flags": flags}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self._read())

    def close(self) -> dict:
        """Stop the worker; its own CPU time (wait4 rusage) over its whole life."""
        self.proc.stdin.close()
        _, status, usage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.log.close()
        return {"exit": self.proc.returncode, "cpu_seconds": usage.ru_utime + usage.ru_stime,
                "max_rss_bytes": usage.ru_maxrss * 1024}


def per_step(reply: dict) -> dict:
    """Mean seconds per step of a block, wall and process CPU, over every epoch the block trained."""
    steps = reply["steps_per_epoch"] * len(reply["history"])
    return {"wall": sum(h["train_seconds"] for h in reply["history"]) / steps,
            "cpu": sum(h["train_cpu_seconds"] for h in reply["history"]) / steps, "steps": steps}


def run_settings(settings: list[Setting], base_flags: list[str], threads: int, work_dir: Path, seed: int,
                 timeout_s: float, say: Callable[[str], None] = print, warmup_rounds: int = 0) -> dict:
    """Every setting's rounds on one set of workers; a failed block is recorded and the rounds go on.

    Each setting first runs `warmup_rounds` extra rounds, recorded but left out of the statistics: a worker's
    first blocks with new shapes pay one-off costs (on a GPU: lazy CUDA module loading, cuDNN autotuning,
    60-300 ms a step against 3-5 ms after).
    """
    needed = sorted({arm.worker for s in settings for arm in s.arms})
    out = {"threads": threads, "warmup_rounds": warmup_rounds, "settings": {}, "workers": {}}
    settings = [Setting(s.name, s.flags, s.arms, s.rounds + warmup_rounds) for s in settings]
    workers = {}
    try:
        for key in needed:
            workers[key] = Worker(SIDE_OF_WORKER[key], threads, work_dir / f"worker-{key}.log", timeout_s)
        rng = random.Random(seed)
        for setting in settings:
            out["settings"][setting.name] = {"flags": [*base_flags, *setting.flags],
                                             "arms": [a.name for a in setting.arms], "blocks": []}
            _run_setting(setting, base_flags, workers, work_dir, rng, say, out["settings"][setting.name]["blocks"])
    except Exception as err:  # a worker that cannot start or died: recorded, the suite goes on
        out["error"] = f"{type(err).__name__}: {err}"[:300]
    finally:
        for key, worker in workers.items():
            out["workers"][key] = worker.close()
    return out


def _run_setting(setting: Setting, base_flags: list[str], workers: dict, work_dir: Path, rng: random.Random,
                 say: Callable[[str], None], blocks: list[dict]) -> None:
    """Append each block's record to `blocks` as it finishes (a dead worker keeps what was measured)."""
    for r in range(setting.rounds):
        order = list(setting.arms)
        rng.shuffle(order)
        for position, arm in enumerate(order):
            folder = work_dir / setting.name.replace(" ", "_") / f"r{r:02d}-{arm.name.replace(' ', '_').replace('/', '')}"
            reply = workers[arm.worker].run([*base_flags, *setting.flags, *arm.flags, "--output-dir", str(folder)])
            block = {"round": r, "arm": arm.name, "position": position, "ok": reply["ok"],
                     "error": reply.get("error"), "loadavg_1min": os.getloadavg()[0]}  # what else the machine ran
            if reply["ok"]:
                block.update(per_step=per_step(reply), block_wall_seconds=reply["block_wall_seconds"],
                             block_cpu_seconds=reply["block_cpu_seconds"],
                             final_weights_sha256=reply["final_weights_sha256"])
            blocks.append(block)
        say(f"  blocks {setting.name}: round {r + 1}/{setting.rounds}")
