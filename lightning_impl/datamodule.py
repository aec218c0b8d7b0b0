"""WaferDataModule: the shared splits and loaders, plus on-device augmentation and memory format."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader

from shared.config import TrainConfig
from shared.data import WaferSplits, make_dataloaders, random_dihedral, split_dataset


class WaferDataModule(L.LightningDataModule):
    """Serves exactly the batches of shared.data.make_dataloaders, in the same order as the plain side."""

    def __init__(self, cfg: TrainConfig, pin_memory: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.pin_memory = pin_memory
        self.splits: WaferSplits | None = None
        self._loaders: tuple[DataLoader, DataLoader, DataLoader] | None = None

    def setup(self, stage: str | None = None) -> None:
        # fit() calls this before the Trainer does (banner, class weights); build the splits once
        if self.splits is None:
            self.splits = split_dataset(self.cfg)

    def loaders(self) -> tuple[DataLoader, DataLoader, DataLoader]:
        """Train/val/test loaders, built once; the train sampler shards by this process's rank when under DDP."""
        if self._loaders is None:  # the Trainer asks for each loader separately: build (and copy to the device) once
            rank, world_size = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
            device = self.trainer.strategy.root_device if self.trainer else None
            self._loaders = make_dataloaders(self.cfg, self.splits, rank, world_size, pin_memory=self.pin_memory,
                                             device=device)
        return self._loaders

    def train_dataloader(self) -> DataLoader:
        return self.loaders()[0]

    def val_dataloader(self) -> DataLoader:
        return self.loaders()[1]

    def test_dataloader(self) -> DataLoader:
        return self.loaders()[2]

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x, y = batch
        if self.cfg.augment and self.trainer.training:
            x = random_dihedral(x)  # on the device, training batches only (contract item 3)
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y
