"""Process-level helpers both sides call: seeding, device choice, torch settings, atomic writes."""

from __future__ import annotations

import hashlib
import io
import os
import random
import re
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from shared.config import TrainConfig
from shared.errors import ConfigError, TrainingError  # noqa: F401 (TrainingError: both sides import it from here)

_UMASK = os.umask(0o022)  # read once at import (os.umask can only be read by setting it) ...
os.umask(_UMASK)  # ... and restored at once
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(cfg: TrainConfig, epoch: int) -> int:
    """The seed both sides re-seed with at the start of every epoch.

    Dropout (and augmentation) randomness then depends only on (seed, epoch), so a resumed run
    draws the same numbers as an uninterrupted one without either side restoring RNG state.
    """
    return cfg.seed * 1000 + epoch


def resolve_device(cfg: TrainConfig) -> torch.device:
    """cpu, or cuda when asked for ('gpu') or available ('auto'); 'gpu' without CUDA is an error."""
    if cfg.accelerator == "gpu" and not torch.cuda.is_available():
        raise ConfigError("accelerator", "accelerator='gpu' but CUDA is not available on this machine")
    use_cuda = cfg.accelerator == "gpu" or (cfg.accelerator == "auto" and torch.cuda.is_available())
    return torch.device("cuda" if use_cuda else "cpu")


def trainer_device_args(cfg: TrainConfig, device: torch.device) -> dict:
    """The device resolve_device picked and cfg's precision, in Lightning's Trainer terms."""
    # "auto" in Lightning would also consider MPS/TPU; bf16-mixed is autocast there, as on the plain side
    return {"accelerator": "gpu" if device.type == "cuda" else "cpu",
            "precision": "32-true" if cfg.precision == "32" else cfg.precision}


def apply_torch_settings(cfg: TrainConfig) -> None:
    """Global numeric settings, identical on both sides (Lightning has no Trainer flag for these)."""
    torch.use_deterministic_algorithms(cfg.deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = not cfg.deterministic
    # full fp32 matmuls on both sides; TF32 would be a separate, declared speed variant
    torch.set_float32_matmul_precision("highest")


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels before reading a clock (a CPU-GPU sync point; a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# atomic_write_bytes's temp files: "." + the target's name + "." + mkstemp's 8 random characters + ".tmp"
TEMP_FILE = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp$")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then os.replace: readers see old or new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the mode open() would have
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: object, path: str | Path) -> None:
    """torch.save through atomic_write_bytes."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def state_digest(module: torch.nn.Module) -> str:
    """SHA-256 over every parameter and buffer: equal digests mean bit-identical weights."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def load_torch_file(path: str | Path) -> object:
    """torch.load(weights_only=True) onto the CPU; a TrainingError naming the file and the cause if that fails."""
    if not Path(path).is_file():
        raise TrainingError(f"{path}: no such checkpoint file")
    try:
        # weights_only=True, as Lightning itself loads local checkpoints: a foreign pickle cannot run code
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, random bytes, foreign objects: torch raises many types
        # torch's weights-only message is a coloured paragraph about its defaults; the cause follows this marker
        text = _ANSI.sub("", str(err)).split("WeightsUnpickler error:")[-1]
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        reason = textwrap.shorten(f"{type(err).__name__}: {lines[0] if lines else 'no detail'}", 200, placeholder=" …")
        raise TrainingError(f"{path}: not a readable checkpoint, corrupt or truncated? ({reason})") from err


def non_finite_loss(epoch: int, checkpoint_dir: Path | None, detail: str = "") -> TrainingError:
    """The error both sides stop with, naming the checkpoints only where some were written."""
    kept = checkpoint_dir is not None and checkpoint_dir.is_dir() and any(checkpoint_dir.iterdir())
    where = f"checkpoints so far are kept in {checkpoint_dir}" if kept else "no checkpoint was written"
    return TrainingError(f"non-finite training loss in epoch {epoch}{detail}; stopped before validation, {where}")


def replica_digest(module: torch.nn.Module) -> str:
    """state_digest of the weights, after checking that every DDP rank holds the same ones (rank 0 says so)."""
    digest = state_digest(module)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        digests = [None] * dist.get_world_size()
        dist.all_gather_object(digests, digest)
        if len(set(digests)) > 1:
            raise TrainingError(f"DDP replicas diverged: weight digests per rank {digests}")
        if dist.get_rank() == 0:
            print(f"weights identical on all {len(digests)} ranks (sha256 {digest[:12]})", flush=True)
    return digest
