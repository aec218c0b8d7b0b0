"""The output folder one run owns: checked before any work, locked for the run's lifetime, never mixed."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from shared.config import TrainConfig
from shared.errors import TrainingError
from shared.runtime import TEMP_FILE

# what a run writes; anything else in the folder (a benchmark's console.log, a user's notes) is not a run
RUN_OUTPUTS = ("metrics.json", "confusion_matrix.png", "sample_predictions.png", "checkpoints", "tensorboard")
TRAINING_OUTPUTS = ("checkpoints", "tensorboard")  # only training writes these; evaluate may replace the rest
LOCK_NAME = ".lock"


def is_global_rank_zero() -> bool:
    """True unless torchrun or Lightning's DDP launcher started this process as another rank."""
    return all(int(os.environ.get(name, 0)) == 0 for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK"))


def check_output_folder(path: str | Path, flag: str = "--output-dir") -> Path:
    """TrainingError if the folder is a file or could not be created or written; creates nothing."""
    path = Path(path)
    existing = next(p for p in (path, *path.parents) if p.exists())  # the folder, or where it would be created
    if not existing.is_dir():
        raise TrainingError(f"{flag} {path}: {'it' if existing == path else existing} is a file, not a folder")
    if not can_write(existing):
        raise TrainingError(f"{flag} {path}: {'it' if existing == path else existing} is not writable")
    return path


def can_write(folder: Path) -> bool:
    """Whether a file can be created and removed in folder, found by doing it."""
    # os.access answers yes to root for /proc, /sys and read-only mounts, where the run would then fail
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".write-probe.", suffix=".tmp")
    except OSError:
        return False
    os.close(fd)
    os.unlink(name)
    return True


def existing_outputs(path: Path, names: tuple[str, ...] = RUN_OUTPUTS) -> list[str]:
    return [name for name in names if (path / name).exists()]


@contextlib.contextmanager
def output_lock(path: Path) -> Iterator[None]:
    """An exclusive flock on path/.lock for the block; another holder makes it a TrainingError at once.

    flock rather than a pid file: the kernel drops the lock when its process dies however it dies, so a
    killed run's leftover file blocks nothing and no pid (possibly reused) has to be checked.
    """
    lock = path / LOCK_NAME
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise TrainingError(f"--output-dir {path}: another run (pid {holder}) is writing there; wait for it "
                                f"or choose another --output-dir") from None
        if not lock.exists() or os.stat(lock).st_ino != os.fstat(fd).st_ino:  # its holder removed it meanwhile
            raise TrainingError(f"--output-dir {path}: another run has just finished there; start again")
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)  # while still held: whoever opens it next sees a new file
    finally:
        os.close(fd)


@contextlib.contextmanager
def claim_output_dir(cfg: TrainConfig) -> Iterator[None]:
    """Own cfg.output_dir for the block (global rank 0 only): refuse a file, a locked or an earlier run's folder."""
    if not is_global_rank_zero():
        yield
        return
    path = check_output_folder(cfg.output_dir)
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    try:
        with output_lock(path):
            found = existing_outputs(path)
            if found and cfg.overwrite:
                clear_outputs(path, found, "--overwrite:")
            elif found and cfg.resume != "last" and not holds_a_result(path, cfg.checkpoint_dir):
                clear_outputs(path, found, f"--output-dir {path} holds a run that stopped before its first "
                                           f"checkpoint (nothing to resume), so it starts afresh:")
            elif found:
                refuse_another_run(path, found, cfg)
            remove_dead_temp_files(path, cfg.checkpoint_dir)
            yield
    except BaseException:
        if created and not any(path.iterdir()):  # a refused run leaves no empty folder behind
            path.rmdir()
        raise


def holds_a_result(path: Path, checkpoint_dir: Path) -> bool:
    """Whether the folder holds a metrics.json or a checkpoint (half-written temp files do not count)."""
    checkpoints = checkpoint_dir.iterdir() if checkpoint_dir.is_dir() else ()
    return (path / "metrics.json").exists() or any(f.is_file() and not TEMP_FILE.match(f.name) for f in checkpoints)


def refuse_another_run(path: Path, found: list[str], cfg: TrainConfig) -> None:
    """TrainingError unless cfg continues the run in path: --resume last, or one of its own checkpoints."""
    held = f"--output-dir {path} holds another run's outputs ({', '.join(found)})"
    if cfg.resume is None:
        raise TrainingError(f"{held}; add --resume last to continue it, --overwrite to replace it, or choose "
                            f"another folder")
    if cfg.resume != "last" and Path(cfg.resume).resolve().parent != cfg.checkpoint_dir.resolve():
        raise TrainingError(f"{held}; --resume {cfg.resume} continues a run from elsewhere: choose an empty "
                            f"--output-dir for it, or --resume last to continue the run there")


def remove_dead_temp_files(path: Path, checkpoint_dir: Path) -> None:
    """Delete half-written atomic-write temp files a killed run left in the folder and its checkpoints.

    Called with the folder's lock held, so no live writer owns them; the files they were to replace are intact.
    """
    def dead_temp(f: Path, in_checkpoints: bool) -> bool:  # checkpoints/ is the run's; beside it, only its outputs
        match = TEMP_FILE.match(f.name)
        return f.is_file() and match is not None and (in_checkpoints or match["target"] in RUN_OUTPUTS)

    dead = [f for folder, inside in ((path, False), (checkpoint_dir, True)) if folder.is_dir()
            for f in folder.iterdir() if dead_temp(f, inside)]
    for f in dead:
        f.unlink(missing_ok=True)
    if dead:
        print(f"removed {len(dead)} half-written file(s) a killed run left in {path}: "
              f"{', '.join(sorted(f.name for f in dead))}", flush=True)


def clear_outputs(path: Path, found: list[str], why: str) -> None:
    """Delete the run outputs found (only those: the folder may hold other files) and say why."""
    for name in found:
        target = path / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    print(f"{why} removed {', '.join(found)} from {path}", flush=True)


def resume_file(cfg: TrainConfig, last_name: str) -> Path | None:
    """The checkpoint --resume names ('last' is checkpoint_dir/last_name); None without --resume, an error if missing."""
    if cfg.resume is None:
        return None
    path = cfg.checkpoint_dir / last_name if cfg.resume == "last" else Path(cfg.resume)
    if not path.is_file():
        other = [f for f in sorted(cfg.checkpoint_dir.glob("last.*")) if f.name != last_name]
        if cfg.resume == "last" and other and other[0].suffix in OTHER_SIDE:
            raise TrainingError(f"--resume last: no checkpoint at {path}; {other[0]} is the other side's: continue "
                                f"it with {OTHER_SIDE[other[0].suffix]} --output-dir {cfg.output_dir} --resume last")
        fresh = cfg.resume == "last" and not holds_a_result(Path(cfg.output_dir), cfg.checkpoint_dir)
        raise TrainingError(f"--resume {cfg.resume}: no checkpoint at {path}"
                            + ("; nothing to resume: without --resume the run starts afresh" if fresh else ""))
    return path


# whose last checkpoint a folder holds, by its file name's suffix
OTHER_SIDE = {".pt": "python -m plain_pytorch.train", ".ckpt": "python -m lightning_impl.train"}
