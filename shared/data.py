"""The dataset both sides train on: load, stratified split, and the three DataLoaders."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler, TensorDataset

from shared.config import CLASS_NAMES, TrainConfig
from shared.errors import DataError
from shared.synthetic import MIN_MAPS_PER_CLASS, generate_wafer_maps
from shared.wm811k import WaferMaps, file_digest, load_wm811k, resize_codes


@dataclass
class WaferSplits:
    """Inputs (N, 1, S, S) float32 in {0, 0.5, 1} and labels (N,) int64 for each split."""

    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    class_weights: torch.Tensor
    skipped: dict[str, int]


def load_maps(cfg: TrainConfig) -> WaferMaps:
    """Synthetic maps, or every labelled map of the real file, resized to cfg.image_size."""
    if cfg.data == "synthetic":
        return synthetic_maps(cfg.samples_per_class, cfg.balance_classes, cfg.seed, cfg.image_size)
    return load_wm811k(cfg.data, cfg.image_size)


@functools.lru_cache(maxsize=2)
def synthetic_maps(samples_per_class: int, balance_classes: bool, seed: int, image_size: int) -> WaferMaps:
    """The synthetic maps, kept for the next run in this process (a benchmark worker's blocks; 18,000 maps take
    ~7 s to draw on a 2-core CPU). Callers copy what they take (`to_inputs`, indexing)."""
    maps, labels = generate_wafer_maps(samples_per_class, balance_classes, seed)
    return WaferMaps(np.stack([resize_codes(m, image_size) for m in maps]), labels)


def experiment_facts(cfg: TrainConfig, world_size: int) -> dict:
    """What the experiment is beyond its flags: the processes that share each step, and the data's content."""
    # the content, not the path: a moved file is the same data, a file overwritten with other maps is not
    return {"world_size": world_size, "data_sha256": None if cfg.data == "synthetic" else file_digest(Path(cfg.data))}


def class_mix(cfg: TrainConfig) -> str:
    """Which class proportions the validation and test maps have (metrics on a balanced set read higher)."""
    if cfg.data != "synthetic":
        return "natural: the file's own class proportions"
    return "synthetic, balanced" if cfg.balance_classes else "synthetic, WM-811K's class proportions"


def subsample(labels: np.ndarray, cap: int, balance: bool, seed: int) -> np.ndarray:
    """Indices kept: at most `cap` per class (balance), or all classes scaled so the largest has `cap`
    (each keeping at least MIN_MAPS_PER_CLASS, or all it has, so a stratified split still holds it)."""
    if cap == 0:
        return np.arange(len(labels))
    counts = np.bincount(labels, minlength=len(CLASS_NAMES))
    scale = 1.0 if balance else min(1.0, cap / counts.max())
    rng = np.random.default_rng(seed)
    keep = []
    for label, count in enumerate(counts):
        take = min(count, cap) if balance else max(min(count, cap, MIN_MAPS_PER_CLASS), round(count * scale))
        keep.append(rng.choice(np.flatnonzero(labels == label), size=take, replace=False))
    return np.sort(np.concatenate(keep))


def to_inputs(codes: np.ndarray) -> torch.Tensor:
    """Die codes 0/1/2 -> float maps 0/0.5/1 with a channel axis."""
    return torch.from_numpy(codes).float().div_(2.0).unsqueeze(1)


def split_dataset(cfg: TrainConfig) -> WaferSplits:
    """Stratified train/val/test split drawn from cfg.seed; class weights (balanced ** power) from the training split.

    On a real file the per-class cap (--samples-per-class) thins the training split alone: validation and
    test keep the class mix a fab sees, so their metrics say how the model does on real wafers.
    """
    from sklearn.model_selection import train_test_split  # here, not at the top: ~1 s of start-up
    from sklearn.utils.class_weight import compute_class_weight

    maps = load_maps(cfg)
    idx = np.arange(len(maps.labels))
    try:
        train_idx, rest = train_test_split(idx, test_size=cfg.val_fraction + cfg.test_fraction,
                                           stratify=maps.labels, random_state=cfg.seed)
        val_idx, test_idx = train_test_split(rest, test_size=cfg.test_fraction / (cfg.val_fraction + cfg.test_fraction),
                                             stratify=maps.labels[rest], random_state=cfg.seed)
    except ValueError as err:  # sklearn's message names class indices and says nothing of the flags
        counts = dict(zip(CLASS_NAMES, np.bincount(maps.labels, minlength=len(CLASS_NAMES)).tolist()))
        more = "raise --samples-per-class" if cfg.data == "synthetic" else f"{cfg.data} needs more maps of each class"
        raise DataError(f"too few maps for a stratified train/val/test split (maps per class: {counts}); "
                        f"{more} or change the val/test fractions ({err})") from err
    if cfg.data != "synthetic":
        train_idx = train_idx[subsample(maps.labels[train_idx], cfg.samples_per_class, cfg.balance_classes, cfg.seed)]
    x, y = to_inputs(maps.codes), torch.from_numpy(maps.labels)
    present = np.unique(maps.labels[train_idx])
    weights = np.ones(len(CLASS_NAMES), dtype=np.float32)
    weights[present] = compute_class_weight("balanced", classes=present, y=maps.labels[train_idx]) ** cfg.class_weight_power
    return WaferSplits(*(TensorDataset(x[i], y[i]) for i in (train_idx, val_idx, test_idx)),
                       class_weights=torch.from_numpy(weights), skipped=maps.skipped)


def evaluation_dataset(cfg: TrainConfig, split: str) -> tuple[TensorDataset, dict[str, int]]:
    """What an evaluate command scores, and the skips: the run's val or test split rebuilt from its config
    (split_dataset, as training drew it), or every labelled map ('all')."""
    if split in ("val", "test"):
        splits = split_dataset(cfg)
        return getattr(splits, split), splits.skipped
    maps = load_maps(cfg)
    return TensorDataset(to_inputs(maps.codes), torch.tensor(maps.labels)), maps.skipped


def train_sampler(dataset: TensorDataset, cfg: TrainConfig, rank: int = 0,
                  world_size: int = 1) -> DistributedSampler | ClassBalancedSampler:
    """Shuffles (or draws, --sampler balanced) with seed + epoch (call set_epoch): the order is (seed, epoch)'s alone.

    A resumed run therefore sees the same batches as an uninterrupted one, and with world_size > 1
    each rank gets its own shard. Lightning calls set_epoch on it by itself.
    """
    if cfg.sampler == "balanced":
        return ClassBalancedSampler(dataset.tensors[1], cfg.sampler_power, cfg.seed, rank, world_size)
    return DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=cfg.seed)


class ClassBalancedSampler(Sampler[int]):
    """Each epoch, len(labels) maps drawn with replacement, each weighted (1 / its class's count) ** power,
    from a generator seeded with seed + epoch (set_epoch); rank r takes draws r, r + world_size, ..."""

    def __init__(self, labels: torch.Tensor, power: float, seed: int, rank: int = 0, world_size: int = 1) -> None:
        counts = torch.bincount(labels).double()
        self.weights = counts.reciprocal()[labels] ** power  # float64: the draw must not hang on rounding
        self.num_samples = math.ceil(len(labels) / world_size)  # as DistributedSampler: every rank the same steps
        self.seed, self.rank, self.world_size, self.epoch = seed, rank, world_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        draws = torch.multinomial(self.weights, self.num_samples * self.world_size, replacement=True,
                                  generator=generator)
        return iter(draws[self.rank::self.world_size].tolist())


class DeviceTensorDataset(TensorDataset):
    """A TensorDataset whose tensors live on the device: a batch is one gather there, not a stack of samples."""

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        device = self.tensors[0].device
        index = torch.as_tensor(indices)
        if device.type == "cuda":  # from pinned memory the copy is queued; from pageable memory it waits for the GPU
            index = index.pin_memory()
        index = index.to(device, non_blocking=True)
        return [tensor.index_select(0, index) for tensor in self.tensors]


def _gathered(batch: list[torch.Tensor]) -> list[torch.Tensor]:
    """collate_fn for DeviceTensorDataset: the gather already made the batch."""
    return batch


def make_loader(dataset: TensorDataset, cfg: TrainConfig, *, sampler=None, pin_memory: bool = False,
                device: torch.device | None = None) -> DataLoader:
    """The DataLoader both sides use; persistent workers when there are workers.

    With cfg.data_on_device the dataset's tensors are copied to `device` once and each batch is gathered there
    by the same sampler, so the batches and their order are those of the default path.
    """
    collate_fn = None
    if cfg.data_on_device:
        dataset = DeviceTensorDataset(*(tensor.to(device or "cpu") for tensor in dataset.tensors))
        collate_fn, pin_memory = _gathered, False
    # its own generator: iter(loader) would otherwise draw its base seed from the global torch RNG, and
    # Lightning creates the first epoch's iterator before on_train_epoch_start re-seeds (fit_loop.setup_data)
    return DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, shuffle=False,
                      num_workers=cfg.num_workers, persistent_workers=cfg.num_workers > 0, collate_fn=collate_fn,
                      pin_memory=pin_memory, generator=torch.Generator().manual_seed(cfg.seed))


def make_dataloaders(cfg: TrainConfig, splits: WaferSplits | None = None, rank: int = 0, world_size: int = 1,
                     pin_memory: bool = False, device: torch.device | None = None,
                     ) -> tuple[DataLoader, DataLoader, DataLoader]:
    """Train (seeded, shuffled, sharded), val and test loaders: the same batches, in the same order, on both sides."""
    splits = splits or split_dataset(cfg)
    train = make_loader(splits.train, cfg, sampler=train_sampler(splits.train, cfg, rank, world_size),
                        pin_memory=pin_memory, device=device)
    val, test = (make_loader(split, cfg, pin_memory=pin_memory, device=device) for split in (splits.val, splits.test))
    return train, val, test


def random_dihedral(x: torch.Tensor) -> torch.Tensor:
    """Per-map random flip and 90-degree rotation (wafer defects have no preferred orientation).

    Draws on the CPU's global torch RNG whatever the device, which both sides re-seed every epoch.
    """
    turns, flips = torch.randint(0, 4, (x.shape[0],)), torch.rand(x.shape[0]) < 0.5
    out = x.clone()
    for k in (1, 2, 3):
        rows = torch.nonzero(turns == k).squeeze(1).to(x.device)
        out[rows] = torch.rot90(x[rows], k, dims=(-2, -1))
    rows = torch.nonzero(flips).squeeze(1).to(x.device)
    out[rows] = out[rows].flip(-1)
    return out


def describe(cfg: TrainConfig, splits: WaferSplits) -> str:
    """One banner line: source, sizes, classes."""
    source = "synthetic" if cfg.data == "synthetic" else cfg.data
    total = len(splits.train) + len(splits.val) + len(splits.test)
    sizes = f"train {len(splits.train)} / val {len(splits.val)} / test {len(splits.test)}"
    return f"data: {source}, {total} maps ({sizes}), {len(CLASS_NAMES)} classes, {cfg.image_size}x{cfg.image_size}"
