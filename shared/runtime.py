"""Process-level helpers both sides call: seeding, device choice, torch settings, atomic writes."""

from __future__ import annotations

import hashlib
import io
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from shared.config import TrainConfig

_UMASK = os.umask(0o022)  # read once at import (os.umask can only be read by setting it) ...
os.umask(_UMASK)  # ... and restored at once


class TrainingError(RuntimeError):
    """A failure the user can act on (bad checkpoint, non-finite loss); the CLI prints it in one line."""


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
        raise ValueError("accelerator='gpu' but CUDA is not available on this machine")
    use_cuda = cfg.accelerator == "gpu" or (cfg.accelerator == "auto" and torch.cuda.is_available())
    return torch.device("cuda" if use_cuda else "cpu")


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
