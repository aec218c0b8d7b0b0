"""The LightningModule's hooks as functions: loss, one batch's step, epoch means, optimizer."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from plain_pytorch.distributed import World, all_reduce_sum
from shared.config import TrainConfig
from shared.model import tta_log_probs
from shared.runtime import epoch_seed, seed_everything
from shared.schedule import make_optimizer, make_scheduler


def make_criterion(cfg: TrainConfig, loss_weights: torch.Tensor | None,
                   device: torch.device) -> nn.Module:
    """Cross-entropy, weighted per class when loss_weights are given (on the device)."""
    weight = loss_weights.to(device) if loss_weights is not None else None
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)


def model_step(net: nn.Module, criterion: nn.Module, batch: tuple[torch.Tensor, torch.Tensor],
               tta: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Loss, predicted classes and labels of a batch (train, val and test; tta: 8-view mean)."""
    x, y = batch
    logits = tta_log_probs(net, x) if tta else net(x)
    return criterion(logits, y), logits.argmax(dim=1), y


def on_train_epoch_start(cfg: TrainConfig, epoch: int) -> None:
    """Reseed for the epoch."""
    # dropout and augmentation draw from (seed, epoch) alone: a resumed run draws what an
    # uninterrupted one does
    seed_everything(epoch_seed(cfg, epoch))


def training_step(net: nn.Module, criterion: nn.Module, batch, sums: dict) -> torch.Tensor:
    """One batch's loss, its sums added to the epoch's (the loop does backward and step)."""
    loss, preds, y = model_step(net, criterion, batch)
    accumulate(sums, "train", loss, preds, y)
    return loss


def validation_step(net: nn.Module, criterion: nn.Module, batch, sums: dict) -> None:
    """Add one batch to the epoch's validation sums."""
    loss, preds, y = model_step(net, criterion, batch)
    accumulate(sums, "val", loss, preds, y)


def test_step(net: nn.Module, criterion: nn.Module, batch, outputs: list, tta: bool) -> None:
    """Keep one batch's labels and predictions."""
    loss, preds, y = model_step(net, criterion, batch, tta=tta)
    outputs.append((y, preds))  # for the shared sklearn metrics after the test loop


def test_predictions(outputs: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels and predictions of a test loop, on the CPU."""
    y_true, y_pred = (torch.cat(parts).cpu() for parts in zip(*outputs))
    return y_true, y_pred


def accumulate(sums: dict, stage: str, loss: torch.Tensor, preds: torch.Tensor,
               y: torch.Tensor) -> None:
    """Add a batch to the stage's (loss x n, correct, n) sums, on the device (no sync)."""
    batch = (loss.detach() * len(y), (preds == y).sum(), len(y))
    total = sums.get(stage)
    sums[stage] = batch if total is None else tuple(a + b for a, b in zip(total, batch))


# Lightning: self.log(..., on_epoch=True, batch_size=len(y), sync_dist=True)
def epoch_means(sums: dict, stage: str, world: World) -> dict[str, float]:
    """`{stage}_loss`/`{stage}_acc`: the epoch's sums reduced over ranks, divided in float32."""
    loss_sum, correct, seen = sums.pop(stage)
    sums = torch.stack([loss_sum, correct.float(),
                        torch.tensor(float(seen), device=loss_sum.device)])
    sums = all_reduce_sum(sums, world)
    loss, acc = (sums[:2] / sums[2]).tolist()  # one host read per stage and epoch
    return {f"{stage}_loss": loss, f"{stage}_acc": acc}


def configure_optimizers(model: nn.Module, cfg: TrainConfig,
                         total_steps: int) -> tuple[torch.optim.Optimizer, LRScheduler]:
    """Adam and the learning-rate schedule, stepped once per optimizer step."""
    optimizer = make_optimizer(model.parameters(), cfg)
    scheduler = make_scheduler(optimizer, cfg, total_steps)
    return optimizer, scheduler
