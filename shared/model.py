"""WaferCNN: the one model both implementations train. It knows nothing about training."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import nn

from shared.config import CLASS_NAMES, TrainConfig


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Conv-BN-ReLU, then 2x max-pool (one conv per stage keeps a 2-core CPU epoch at seconds)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class WaferCNN(nn.Module):
    """Three conv stages (C, 2C, 4C channels) and a two-layer classifier for 1xSxS wafer maps (any S >= 8)."""

    def __init__(self, num_classes: int = 9, base_channels: int = 32, dropout_rate: float = 0.3) -> None:
        super().__init__()
        c = base_channels
        self.features = nn.Sequential(conv_block(1, c), conv_block(c, 2 * c), conv_block(2 * c, 4 * c))
        # global average pooling would lose *where* on the wafer the failures are; a small pooled grid keeps it
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(4 * c * 4 * 4, 256),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout_rate),
            nn.Linear(256, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))


def build_model(cfg: TrainConfig) -> WaferCNN:
    """The WaferCNN a config describes (call after seeding: this draws the initial weights)."""
    return WaferCNN(len(CLASS_NAMES), cfg.base_channels, cfg.dropout)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def dihedral_views(x: torch.Tensor) -> Iterator[torch.Tensor]:
    """The 8 flips and 90-degree rotations of a batch of maps (the identity first)."""
    for flipped in (x, x.flip(-1)):
        for turns in range(4):
            yield torch.rot90(flipped, turns, dims=(-2, -1))


def tta_log_probs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Log of the class probabilities averaged over dihedral_views: logits for argmax and cross-entropy alike.

    Cross-entropy of these is the NLL of the averaged probabilities (they are already log-softmaxed).
    """
    # one view at a time, not one 8x batch: an inference batch sized for the card would not fit 8 times
    log_probs = torch.stack([model(view).float().log_softmax(1) for view in dihedral_views(x)])
    return torch.logsumexp(log_probs, 0) - math.log(8)  # log(mean(p)) without underflow to log(0)
