"""WaferLightningModel: the shared WaferCNN plus the loss, optimizer and logging Lightning wants."""

from __future__ import annotations

import lightning as L
import torch
from torch import nn

from shared.config import TrainConfig
from shared.model import tta_log_probs
from shared.runtime import epoch_seed, seed_everything
from shared.schedule import make_optimizer, make_scheduler


class WaferLightningModel(L.LightningModule):
    """Trains any classifier `model` (here WaferCNN) with cross-entropy and Adam (the contract)."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, loss_weights: torch.Tensor | None = None,
                 experiment: dict | None = None) -> None:
        super().__init__()
        # the config and experiment facts (world size, data hash) go into hparams.yaml and the
        # checkpoint as plain values, for resume and evaluate; load_from_checkpoint(path, model=,
        # cfg=) rebuilds this module with the caller's config: loading never re-checks its files
        self.save_hyperparameters({**cfg.to_dict(), **(experiment or {})})
        self.cfg = cfg
        self.model = model
        # the weights are a buffer of the loss module, so Lightning moves them to the device
        self.criterion = nn.CrossEntropyLoss(weight=loss_weights,
                                             label_smoothing=self.cfg.label_smoothing)
        self.test_outputs: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.sums: dict[str, tuple] = {}  # stage -> (loss x n, correct, n) of the epoch so far
        self.epoch_metrics: dict[str, float] = {}  # the last epoch's train and val means

    @property
    def defaults(self) -> bool:
        """--lightning-defaults: log per step as Lightning's docs do."""
        return self.cfg.lightning_defaults

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def model_step(self, batch: tuple[torch.Tensor, torch.Tensor], tta: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Loss, predicted classes and labels of a batch (train, val and test; tta: 8-view mean)."""
        x, y = batch
        logits = tta_log_probs(self.model, x) if tta else self(x)
        return self.criterion(logits, y), logits.argmax(dim=1), y

    def on_train_epoch_start(self) -> None:
        # dropout and augmentation draw from (seed, epoch) alone: a resumed run draws what an
        # uninterrupted one does
        seed_everything(epoch_seed(self.cfg, self.current_epoch))

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss, preds, y = self.model_step(batch)
        if self.defaults:  # as Lightning's docs log: self.log in every step
            if not self.trainer.barebones:  # Lightning forbids self.log in barebones mode
                if self.cfg.tensorboard:
                    self.log("train_loss_step", loss, on_step=True, on_epoch=False)
                self.log_epoch_metrics("train", loss, preds, y)
            return loss
        self.accumulate("train", loss, preds, y)
        # the loss goes to TensorBoard only at the steps the logger writes (one host read, as on
        # the plain side)
        if self.cfg.tensorboard and not self.trainer.barebones \
                and (self.global_step + 1) % self.trainer.log_every_n_steps == 0:
            self.log("train_loss_step", loss, on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        loss, preds, y = self.model_step(batch)
        if not self.defaults:
            self.accumulate("val", loss, preds, y)
        elif not self.trainer.barebones:
            self.log_epoch_metrics("val", loss, preds, y)

    def on_validation_epoch_end(self) -> None:
        # the epoch's train and val means, reduced over the ranks once and logged once (the plain
        # loop's work); here, after validation, both exist, and EarlyStopping/ModelCheckpoint read
        # them next
        if not self.defaults:
            self.epoch_metrics = {**self.epoch_means("train"), **self.epoch_means("val")}
            if not self.trainer.barebones:
                # plain numbers: nothing left to reduce
                self.log_dict(self.epoch_metrics, prog_bar=True)

    def on_test_epoch_start(self) -> None:
        self.test_outputs = []

    def test_step(self, batch, batch_idx: int) -> None:
        loss, preds, y = self.model_step(batch, tta=self.cfg.tta)
        self.test_outputs.append((y, preds))  # for the shared sklearn metrics after trainer.test
        if self.defaults and not self.trainer.barebones:
            self.log_epoch_metrics("test", loss, preds, y)

    def test_predictions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Labels and predictions of the last trainer.test, on the CPU."""
        y_true, y_pred = (torch.cat(parts).cpu() for parts in zip(*self.test_outputs))
        return y_true, y_pred

    def accumulate(self, stage: str, loss: torch.Tensor, preds: torch.Tensor,
                   y: torch.Tensor) -> None:
        """Add a batch to the stage's (loss x n, correct, n) sums, on the device (no sync)."""
        batch = (loss.detach() * len(y), (preds == y).sum(), len(y))
        total = self.sums.get(stage)
        self.sums[stage] = batch if total is None else tuple(a + b for a, b in zip(total, batch))

    def epoch_means(self, stage: str) -> dict[str, float]:
        """`{stage}_loss`/`{stage}_acc`: the epoch's sums reduced over ranks, divided in float32."""
        loss_sum, correct, seen = self.sums.pop(stage)
        sums = torch.stack([loss_sum, correct.float(),
                            torch.tensor(float(seen), device=loss_sum.device)])
        sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
        loss, acc = (sums[:2] / sums[2]).tolist()  # one host read per stage and epoch
        return {f"{stage}_loss": loss, f"{stage}_acc": acc}

    def log_epoch_metrics(self, stage: str, loss: torch.Tensor, preds: torch.Tensor,
                          y: torch.Tensor) -> None:
        """Sample-weighted epoch means `{stage}_loss`/`{stage}_acc` (on_epoch: no per-step sync)."""
        acc = (preds == y).float().mean()
        # sync_dist: under DDP each rank trains on its own shard; reduced once, at epoch end
        self.log_dict({f"{stage}_loss": loss, f"{stage}_acc": acc}, on_step=False, on_epoch=True,
                      prog_bar=stage != "test", batch_size=len(y), sync_dist=True)

    def configure_optimizers(self) -> dict:
        optimizer = make_optimizer(self.parameters(), self.cfg)
        scheduler = make_scheduler(optimizer, self.cfg, self.trainer.estimated_stepping_batches)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
