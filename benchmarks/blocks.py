"""Interleaved blocks: many short runs of each side's real fit(cfg), in a long-lived worker, in random order.

A noisy machine drifts over seconds to minutes; a block is a few seconds, the arms of a round run back to
back in a shuffled order, and each statistic is paired within its round, so the drift cancels. A process also
runs at its own speed (where its memory landed): every arm of a round runs in the same worker process, so that
is common to both sides too, and the rounds of a setting are spread over fresh processes (generations) so the
intervals, taken over the generations, hold whatever is left of it. The A/A arm is plain run a second time:
its ratio shows the noise floor.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.runner import ROOT


@dataclass(frozen=True)
class Arm:
    """One kind of block: which side runs it and the flags it adds to the setting's."""

    name: str  # e.g. "plain", "lightning", "plain A/A", "plain full"
    side: str  # "plain" or "lightning"
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Setting:
    """A block protocol: flags shared by every arm, the arms, how many rounds, over how many worker processes."""

    name: str
    flags: tuple[str, ...]
    arms: tuple[Arm, ...]
    rounds: int
    generations: int = 1  # fresh worker processes the rounds are spread over (rounds must divide evenly)
    # a block's first epochs left out of its time per step (compilation, CUDA-graph recording: steady state by
    # construction); their time is kept as the block's warm-up cost
    skip_epochs: int = 0

    def __post_init__(self) -> None:
        if self.generations < 1 or self.rounds % self.generations:
            raise ValueError(f"setting {self.name}: {self.rounds} rounds do not split into {self.generations} generations")


RATIO_ARMS = (Arm("plain", "plain"), Arm("lightning", "lightning"), Arm("plain A/A", "plain"))
_FULL = ("--no-barebones",)
_DEFAULTS = (*_FULL, "--lightning-defaults")
# as people run it: every feature on. "lightning full" is matched (Lightning doing the plain loop's work and no
# more); "lightning defaults" logs and redraws per step as Lightning's docs show
FULL_ARMS = (Arm("plain full", "plain", _FULL), Arm("lightning full", "lightning", _FULL),
             Arm("lightning defaults", "lightning", _DEFAULTS))
STEP_ARMS = (*RATIO_ARMS, *FULL_ARMS)  # barebones, matched and defaults against plain, with the A/A control
FASTEST_ARMS = FULL_ARMS[:2]  # the fastest configuration as people run it: plain and matched Lightning
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


DEFAULTS_FEATURE_ARMS = (Arm("lightning defaults", "lightning", _DEFAULTS),
                         *(Arm(f"lightning defaults without {name}", "lightning", (*_DEFAULTS, flag))
                           for name, flag in FEATURE_SWITCHES.items()))
FEATURE_ARMS = (*feature_arms("plain"), *feature_arms("lightning"), *DEFAULTS_FEATURE_ARMS)
# arms that train the same weights as the plain barebones arm of their setting (the features change no arithmetic:
# a block is one epoch, early stopping never fires at its patience), and those with the schedule
SAME_WEIGHTS = {"": ("plain", "lightning", "plain A/A",
                     *(a.name for a in (*FULL_ARMS, *FEATURE_ARMS) if a.name != a.side and "cosine" not in a.name)),
                "cosine": ("plain cosine", "lightning cosine")}


class Worker:
    """A `python -m benchmarks.worker` child with both sides imported; one block at a time, one JSON line each."""

    def __init__(self, threads: int, log_path: Path, timeout_s: float) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout_s = timeout_s
        self.reaped = None
        self.log = open(log_path, "ab")
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.worker"], cwd=ROOT, env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log)
        try:
            self.ready = json.loads(self._read())
        except Exception:  # it never became ready: leave no child behind
            self.proc.kill()
            self.proc.wait()
            self.log.close()
            raise

    def _read(self) -> str:
        timer = threading.Timer(self.timeout_s, self.proc.kill)  # a hung block ends the worker, not the suite
        timer.start()
        try:
            line = self.proc.stdout.readline()
        finally:
            timer.cancel()
        if not line:
            raise RuntimeError(f"worker exited (status {self._reap()['exit']}); see {self.log.name}")
        return line

    def run(self, side: str, flags: list[str]) -> dict:
        return self._request({"side": side, "flags": flags})

    def floor(self, flags: list[str]) -> dict:
        """The device's own time per step for these flags, measured in this worker (benchmarks/floor.py)."""
        return self._request({"floor": flags})

    def _request(self, request: dict) -> dict:
        """One JSON line out, one back."""
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        except OSError as err:  # it died between blocks
            raise RuntimeError(f"worker exited ({err}); see {self.log.name}") from None
        return json.loads(self._read())

    def _reap(self, patience_s: float = 5.0) -> dict:
        """Wait for the child (once) and keep its exit status and its own CPU time (wait4 rusage) over its life."""
        if self.reaped is None:
            deadline = time.monotonic() + patience_s
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            while pid == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
                pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid == 0:  # still running after its stdin closed: end it
                self.proc.kill()
                pid, status, usage = os.wait4(self.proc.pid, 0)
            self.proc.returncode = os.waitstatus_to_exitcode(status)
            self.reaped = {"exit": self.proc.returncode, "cpu_seconds": usage.ru_utime + usage.ru_stime,
                           "max_rss_bytes": usage.ru_maxrss * 1024}
        return self.reaped

    def close(self) -> dict:
        """Stop the worker; its exit status and CPU time over its whole life."""
        with contextlib.suppress(OSError):  # a worker that died has no pipe left to close cleanly
            self.proc.stdin.close()
        reaped = self._reap(patience_s=self.timeout_s)
        self.log.close()
        return reaped


def per_step(reply: dict, skip_epochs: int = 0) -> dict:
    """Mean seconds per step of a block, wall and process CPU, over its epochs after the first `skip_epochs`
    (whose training-loop wall time is `warmup_seconds`: compilation and graph recording where there are any)."""
    timed = reply["history"][skip_epochs:]
    if not timed:
        raise ValueError(f"the block trained {len(reply['history'])} epoch(s), all of them skipped as warm-up")
    steps = reply["steps_per_epoch"] * len(timed)
    return {"wall": sum(h["train_seconds"] for h in timed) / steps,
            "cpu": sum(h["train_cpu_seconds"] for h in timed) / steps, "steps": steps,
            "warmup_seconds": sum(h["train_seconds"] for h in reply["history"][:skip_epochs])}


def start_worker(threads: int, log_path: Path, timeout_s: float) -> Callable[[], Worker]:
    """Start a worker in the background; the returned call waits until it is ready (raising what its start raised)."""
    box: dict = {}

    def start() -> None:
        try:
            box["worker"] = Worker(threads, log_path, timeout_s)
        except Exception as err:  # handed to whoever waits for it
            box["error"] = err

    thread = threading.Thread(target=start, daemon=True)
    thread.start()

    def ready() -> Worker:
        thread.join()
        if "error" in box:
            raise box["error"]
        return box["worker"]
    return ready


def run_settings(settings: list[Setting], base_flags: list[str], threads: int, work_dir: Path, seed: int,
                 timeout_s: float, say: Callable[[str], None] = print, warmup_rounds: int = 0,
                 prefetch: bool = False, floors: dict[str, list[str]] | None = None) -> dict:
    """Every setting's rounds, generation by generation; a failed block is recorded and the rounds go on.

    Generation g is a fresh worker process that runs, for every setting with more than g generations, its share
    of the rounds (settings of one generation run in generation 0). Each share starts with `warmup_rounds`
    extra rounds, recorded but left out of the statistics: a process's first blocks with new shapes pay
    one-off costs (on a GPU: lazy CUDA module loading, cuDNN autotuning, 60-300 ms a step against 3-5 ms after).
    With `prefetch` the next generation's worker imports while this one measures: for a many-core host, where a
    worker's start (25 s on the H200 host) would otherwise be most of a short GPU lease; never on a 2-core VM.
    `floors` (setting name -> full flags): after its blocks each worker measures those settings' floor, so the
    floor shares the blocks' process speed.
    """
    out = {"threads": threads, "warmup_rounds": warmup_rounds, "prefetch": prefetch, "settings": {}, "workers": {},
           "floors": {name: [] for name in floors or {}}}
    rng = random.Random(seed)
    for s in settings:
        out["settings"][s.name] = {"flags": [*base_flags, *s.flags], "arms": [a.name for a in s.arms],
                                   "generations": s.generations, "skip_epochs": s.skip_epochs, "blocks": []}
    errors = []
    generations = max(s.generations for s in settings)
    log = lambda g: work_dir / f"worker-g{g:02d}.log"  # noqa: E731
    pending = start_worker(threads, log(0), timeout_s)
    for g in range(generations):
        worker = None
        try:
            worker = pending()
        except Exception as err:  # a worker that could not start: recorded, the next generation goes on
            errors.append(f"generation {g}: {type(err).__name__}: {err}"[:300])
        if g + 1 < generations:
            pending = start_worker(threads, log(g + 1), timeout_s) if prefetch else \
                (lambda g=g: Worker(threads, log(g + 1), timeout_s))
        if worker is None:
            continue
        try:
            for s in settings:
                if g < s.generations:
                    _run_share(s, g, warmup_rounds, base_flags, worker, work_dir, rng, say,
                               out["settings"][s.name]["blocks"])
            for s in settings:
                if s.name in (floors or {}) and g < s.generations:
                    out["floors"][s.name].append({"generation": g, **worker.floor(floors[s.name])})
        except Exception as err:  # the worker died: recorded, the next generation goes on
            errors.append(f"generation {g}: {type(err).__name__}: {err}"[:300])
        finally:
            out["workers"][f"g{g:02d}"] = worker.close()
    if errors:
        out["error"] = "; ".join(errors)[:900]
    return out


def _run_share(setting: Setting, generation: int, warmup_rounds: int, base_flags: list[str], worker: Worker,
               work_dir: Path, rng: random.Random, say: Callable[[str], None], blocks: list[dict]) -> None:
    """One generation's rounds of a setting; each block's record is appended as it finishes (a dead worker keeps
    what was measured). Rounds are numbered across generations; a warm-up round is marked `warmup`."""
    share = setting.rounds // setting.generations
    if setting.skip_epochs:  # each block already leaves out its own warm-up epochs
        warmup_rounds = 0
    for i in range(warmup_rounds + share):
        r = generation * (warmup_rounds + share) + i
        order = list(setting.arms)
        rng.shuffle(order)
        for position, arm in enumerate(order):
            folder = work_dir / setting.name.replace(" ", "_") / f"r{r:03d}-{arm.name.replace(' ', '_').replace('/', '')}"
            reply = worker.run(arm.side, [*base_flags, *setting.flags, *arm.flags, "--output-dir", str(folder)])
            block = {"round": r, "generation": generation, "warmup": i < warmup_rounds, "arm": arm.name,
                     "position": position, "ok": reply["ok"], "error": reply.get("error"),
                     "loadavg_1min": os.getloadavg()[0]}  # what else the machine ran
            if reply["ok"]:
                block.update(per_step=per_step(reply, setting.skip_epochs), block_wall_seconds=reply["block_wall_seconds"],
                             block_cpu_seconds=reply["block_cpu_seconds"],
                             final_weights_sha256=reply["final_weights_sha256"])
            blocks.append(block)
        say(f"  blocks {setting.name}: generation {generation + 1}/{setting.generations}, "
            f"{'warm-up round' if i < warmup_rounds else f'round {i - warmup_rounds + 1}/{share}'}")
