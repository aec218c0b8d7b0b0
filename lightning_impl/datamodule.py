"""WaferDataModule: the shared splits and loaders, plus on-device augmentation and memory format."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader

from shared.config import TrainConfig
from shared.data import WaferSplits, make_loader, random_dihedral, split_dataset, train_sampler


class WaferDataModule(L.LightningDataModule):
    """Serves exactly the batches of shared.data.make_dataloaders, in the plain side's order."""

    def __init__(self, cfg: TrainConfig, pin_memory: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.pin_memory = pin_memory
        self.splits: WaferSplits | None = None

    def setup(self, stage: str | None = None) -> None:
        # fit() calls this before the Trainer does (banner, class weights); build the splits once
        if self.splits is None:
            self.splits = split_dataset(self.cfg)

    def train_dataloader(self) -> DataLoader:
        """Shuffled by seed + epoch, sharded by this process's rank under DDP."""
        sampler = train_sampler(self.splits.train, self.cfg, self.trainer.global_rank,
                                self.trainer.world_size)
        return make_loader(self.splits.train, self.cfg, sampler=sampler, **self._loader_args())

    def val_dataloader(self) -> DataLoader:
        return make_loader(self.splits.val, self.cfg, **self._loader_args())

    def test_dataloader(self) -> DataLoader:
        return make_loader(self.splits.test, self.cfg, **self._loader_args())

    def _loader_args(self) -> dict:
        # data_on_device copies a split to the device the Trainer runs on, once per loader
        return {"pin_memory": self.pin_memory, "device": self.trainer.strategy.root_device}

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x, y = batch
        if self.cfg.augment and self.trainer.training:
            # on the device, training batches only: validation and test see the maps as they are
            x = random_dihedral(x)
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y
