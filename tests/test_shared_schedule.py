"""The learning-rate schedule both sides step: its shape, and that a LambdaLR resumes it exactly."""

from __future__ import annotations

import math

import pytest
import torch

from shared.config import TrainConfig, experiment_changes
from shared.schedule import lr_factor, make_scheduler


def factors(cfg: TrainConfig, total: int) -> list[float]:
    return [lr_factor(cfg, total, step) for step in range(total)]


def test_constant_is_one_at_every_step():
    assert set(factors(TrainConfig(), 50)) == {1.0}


def test_cosine_warms_up_linearly_then_decays_to_zero():
    cfg = TrainConfig(lr_schedule="cosine", epochs=10, warmup_epochs=2)
    f = factors(cfg, 100)  # 10 steps an epoch: 20 warm-up steps
    assert f[:20] == pytest.approx([(s + 1) / 20 for s in range(20)])
    assert f[20] == 1.0 and all(a > b for a, b in zip(f[20:], f[21:]))
    assert f[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 79 / 80)))  # the last step's lr is near, not at, 0
    assert lr_factor(cfg, 100, 100) == pytest.approx(0.0, abs=1e-12)


def test_cosine_without_warm_up_starts_at_the_full_rate():
    f = factors(TrainConfig(lr_schedule="cosine", epochs=4, warmup_epochs=0), 40)
    assert f[0] == 1.0 and f[20] == pytest.approx(0.5 * (1 + math.cos(math.pi * 20 / 40)))


def test_a_restored_scheduler_continues_where_the_saved_one_was():
    cfg = TrainConfig(lr_schedule="cosine", epochs=4, warmup_epochs=1, lr=0.01)

    def run(steps: int, state: dict | None = None) -> tuple[torch.optim.Optimizer, object]:
        optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
        scheduler = make_scheduler(optimizer, cfg, total_steps=40)
        if state is not None:
            scheduler.load_state_dict(state)
        for _ in range(steps):
            optimizer.step()
            scheduler.step()
        return optimizer, scheduler

    whole, _ = run(25)
    _, first = run(12)
    resumed, _ = run(13, first.state_dict())
    assert resumed.param_groups[0]["lr"] == whole.param_groups[0]["lr"]
    assert whole.param_groups[0]["lr"] == pytest.approx(cfg.lr * lr_factor(cfg, 40, 25))


def test_with_a_schedule_the_epochs_define_the_experiment():
    stored = TrainConfig(epochs=5).to_dict()
    assert experiment_changes(stored, TrainConfig(epochs=8)) == []  # constant: a resume may train longer
    scheduled = TrainConfig(epochs=5, lr_schedule="cosine").to_dict()
    assert experiment_changes(scheduled, TrainConfig(epochs=8, lr_schedule="cosine")) == ["epochs=5 (now 8)"]
