"""Reader for real WM-811K data in the original `LSWMD.pkl` layout (the 2 GB file or a subset)."""

from __future__ import annotations

import bz2
import functools
import gzip
import hashlib
import io
import logging
import lzma
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from shared.config import CLASS_NAMES
from shared.errors import DataError
from shared.runtime import atomic_write_bytes

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)
REQUIRED_COLUMNS = ("waferMap", "failureType")
CACHE_VERSION = 1  # bump when preprocessing changes, so old caches are not reused
_OPENERS = {".xz": lzma.open, ".gz": gzip.open, ".bz2": bz2.open}
# LSWMD.pkl is a Python 2 / pandas 0.19 pickle; these modules have moved since
_MODULE_RENAMES = {"pandas.indexes": "pandas.core.indexes", "pandas.core.base.FrozenNDArray": "numpy.ndarray"}


@dataclass
class WaferMaps:
    """Labelled maps resized to one grid: codes (N, S, S) uint8 in {0, 1, 2} and labels (N,) int64."""

    codes: np.ndarray
    labels: np.ndarray
    skipped: dict[str, int] = field(default_factory=dict)


class _LegacyUnpickler(pickle.Unpickler):
    """Maps the pandas 0.19 module paths of the original pickle to where they live now."""

    def find_class(self, module: str, name: str):
        for old, new in _MODULE_RENAMES.items():
            if module == old or module.startswith(old + "."):
                module = new + module[len(old):]
        if module.startswith("pandas.core.indexes.") and not module.startswith("pandas.core.indexes.base"):
            # pandas 0.19 had Int64Index etc. in submodules that no longer exist; Index rebuilds them
            try:
                return super().find_class(module, name)
            except (ImportError, AttributeError):
                return super().find_class("pandas.core.indexes.base", "Index" if name != "_new_Index" else name)
        return super().find_class(module, name)


def _open(path: Path):
    return _OPENERS.get(path.suffix, open)(path, "rb")


def _unpickle(path: Path) -> object:
    """Plain pickle first (fast); the legacy unpickler only when old module paths or py2 strings fail it."""
    try:
        with _open(path) as fh:
            return _load_whole(fh, pickle.Unpickler(fh))
    except (ImportError, AttributeError, UnicodeDecodeError, TypeError):
        pass
    with _open(path) as fh:
        return _load_whole(fh, _LegacyUnpickler(fh, encoding="latin-1"))


def _load_whole(fh, unpickler: pickle.Unpickler) -> object:
    obj = unpickler.load()
    fh.read()  # read to the end: xz/gz/bz2 verify checksum and end marker only there (a cut footer passes otherwise)
    return obj


def read_lswmd(path: str | Path) -> pd.DataFrame:
    """Open an LSWMD-format pickle, including the original Python-2-era file under modern pandas."""
    import pandas as pd  # only a real file needs it (~0.5 s to import)

    path = Path(path)
    try:
        frame = _unpickle(path)
    except (pickle.UnpicklingError, EOFError, lzma.LZMAError, OSError, ImportError, AttributeError,
            UnicodeDecodeError, TypeError) as err:  # a truncated legacy file fails in the second reader too
        raise DataError(f"{path}: not a readable LSWMD pickle ({type(err).__name__}: {err})") from err
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"{path}: expected a pandas DataFrame, found {type(frame).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; found {list(frame.columns)}")
    return frame


def _label_of(value) -> str | None:
    """'Center' from array([['Center']]); None for the unlabelled rows' empty (0, 0) arrays."""
    arr = np.asarray(value, dtype=object)
    if arr.size == 0:
        return None
    label = arr.reshape(-1)[0]
    return label.decode("latin-1") if isinstance(label, bytes) else str(label)


def resize_codes(wafer: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize that keeps the 0/1/2 codes (map size would otherwise leak the class)."""
    t = torch.from_numpy(np.ascontiguousarray(wafer, dtype=np.uint8))[None, None].float()
    return F.interpolate(t, size=(size, size), mode="nearest-exact")[0, 0].to(torch.uint8).numpy()


def preprocess(frame: pd.DataFrame, image_size: int, source: str = "frame") -> WaferMaps:
    """Labelled rows only, resized; an unknown label is an error, a broken map a counted skip."""
    index = {name: i for i, name in enumerate(CLASS_NAMES)}
    index["None"] = index["none"]  # some re-exports spell the clean class with a capital
    codes, labels, skipped = [], [], {"unlabelled": 0, "empty_or_not_2d": 0, "bad_codes": 0}
    for row, (wafer, failure) in enumerate(zip(frame["waferMap"], frame["failureType"])):
        label = _label_of(failure)
        if label is None:
            skipped["unlabelled"] += 1
            continue
        if label not in index:
            raise DataError(f"{source}: row {row} has unknown failureType {label!r}; expected one of {CLASS_NAMES}")
        try:
            wafer = np.asarray(wafer)
        except ValueError:  # ragged nested lists
            wafer = np.empty(0)
        if wafer.ndim != 2 or wafer.size == 0:
            skipped["empty_or_not_2d"] += 1
            continue
        if not np.isin(wafer, (0, 1, 2)).all():
            skipped["bad_codes"] += 1
            continue
        codes.append(resize_codes(wafer, image_size))
        labels.append(index[label])
    if not codes:
        raise DataError(f"{source}: no labelled wafer maps (skipped: {skipped})")
    return WaferMaps(np.stack(codes), np.asarray(labels, dtype=np.int64), skipped)


def file_digest(path: Path) -> str:
    """SHA-256 of the file's bytes (about 2 s for the 2 GB original), read once per version of the file."""
    stat = Path(path).stat()
    return _digest(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)  # a resume check, the data load and each checkpoint ask for the same file's
def _digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 24), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_dir() -> Path:
    """$WAFER_BENCH_CACHE, else ~/.cache/wafer-bench (the data file's folder may be read-only)."""
    return Path(os.environ.get("WAFER_BENCH_CACHE", Path.home() / ".cache" / "wafer-bench"))


def load_wm811k(path: str | Path, image_size: int) -> WaferMaps:
    """Labelled, resized maps of an LSWMD file, cached under the file's content hash."""
    path = Path(path)
    cached = cache_dir() / f"lswmd-{file_digest(path)[:24]}-s{image_size}-v{CACHE_VERSION}.npz"
    if cached.is_file():
        with np.load(cached) as npz:
            skipped = dict(zip(npz["skipped_keys"].tolist(), npz["skipped_values"].tolist()))
            maps = WaferMaps(npz["codes"], npz["labels"], skipped)
    else:
        maps = preprocess(read_lswmd(path), image_size, source=str(path))
        buffer = io.BytesIO()
        np.savez(buffer, codes=maps.codes, labels=maps.labels,
                 skipped_keys=np.array(list(maps.skipped)), skipped_values=np.array(list(maps.skipped.values())))
        atomic_write_bytes(cached, buffer.getvalue())
    warn_malformed(str(path), maps.skipped)  # on every read: a cached load skipped the same maps
    return maps


def warn_malformed(source: str, skipped: dict[str, int]) -> None:
    broken = skipped.get("empty_or_not_2d", 0) + skipped.get("bad_codes", 0)
    if broken:
        log.warning("%s: skipped %d malformed labelled maps: %s", source, broken, skipped)
