"""Both sides, trained in-process on the same flags, take the same steps: equal per-step losses, equal final weights."""

from __future__ import annotations

import pytest

from lightning_impl import train as lightning_train
from plain_pytorch import train as plain_train

pytestmark = pytest.mark.slow

FLAG_SETS = {
    "default": {},
    "augment, class weights, natural mix": {"augment": True, "class_weights": True, "balance_classes": False},
    "softened class weights, natural mix": {"class_weights": True, "class_weight_power": 0.5, "balance_classes": False},
    "balanced sampler ** 0.5, augment, natural mix": {"sampler": "balanced", "sampler_power": 0.5, "augment": True,
                                                      "balance_classes": False},
    # the test split scored with the 8-view mean (validation is not): the same predictions on both sides
    "test-time augmentation": {"tta": True},
    "monitor val_acc": {"monitor": "val_acc", "patience": 1},
    "channels_last": {"channels_last": True},
    "barebones": {"barebones": True},
    # min_delta 100: early stopping would end the run after 2 epochs
    "no early stopping": {"early_stopping": False, "patience": 1, "min_delta": 100.0},
    "no checkpoints, tensorboard or progress bar": {"checkpoints": False, "tensorboard": False, "progress_bar": False},
    "data on device": {"data_on_device": True, "augment": True},
    "cosine schedule, label smoothing": {"lr_schedule": "cosine", "label_smoothing": 0.1},
    "fused Adam": {"fused_optimizer": True},
    # Lightning logging per step as its docs do: other work, the same arithmetic
    "Lightning defaults": {"lightning_defaults": True},
}
EPOCH_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc")


@pytest.mark.parametrize("changes", FLAG_SETS.values(), ids=FLAG_SETS.keys())
def test_both_sides_take_identical_steps(tiny_cfg, tmp_path, changes):
    cfg = tiny_cfg.replace(epochs=3, **changes)
    plain = plain_train.fit(cfg.replace(output_dir=str(tmp_path / "plain")))
    lightning = lightning_train.fit(cfg.replace(output_dir=str(tmp_path / "lightning")))
    assert plain.steps_per_epoch == lightning.steps_per_epoch > 0
    assert plain.train_size == lightning.train_size > 0
    assert len(plain.step_losses) == len(lightning.step_losses) == plain.steps_per_epoch * plain.epochs_run
    assert plain.step_losses == lightning.step_losses  # bitwise: the same arithmetic in the same order
    assert plain.initial_weights_sha256 == lightning.initial_weights_sha256 != ""
    assert plain.final_weights_sha256 == lightning.final_weights_sha256 != ""
    assert (plain.epochs_run, plain.stop_reason) == (lightning.epochs_run, lightning.stop_reason)
    if not (cfg.barebones and cfg.lightning_defaults):  # self.log is forbidden in barebones: nothing to rank by
        assert plain.best_epoch == lightning.best_epoch is not None
    if not cfg.lightning_defaults:  # the same sums, reduced and divided as the plain side does: bitwise
        assert [[e[k] for k in EPOCH_METRICS] for e in plain.history] == \
            [[e[k] for k in EPOCH_METRICS] for e in lightning.history]
    assert plain.test["confusion_matrix"] == lightning.test["confusion_matrix"]
    assert [e["lr"] for e in plain.history] == [e["lr"] for e in lightning.history]


def scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """Every TensorBoard scalar of a run: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder / "tensorboard"))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_both_sides_write_the_same_tensorboard_points(tiny_cfg, tmp_path):
    """Matched Lightning logs what the plain writer logs: the same tags, at the same steps, with the same values
    (plus the `epoch` scalar Lightning's logger adds at every point it writes)."""
    cfg = tiny_cfg.replace(epochs=2, log_every_n_steps=3)
    plain_train.fit(cfg.replace(output_dir=str(tmp_path / "plain")))
    lightning_train.fit(cfg.replace(output_dir=str(tmp_path / "lightning")))
    plain, lightning = scalars(tmp_path / "plain"), scalars(tmp_path / "lightning")
    assert lightning.pop("epoch")  # Lightning's logger adds it beside the metrics it writes
    assert set(plain) == set(lightning) >= {"train_loss_step", *EPOCH_METRICS, "lr-Adam"}
    assert len(plain["train_loss_step"]) >= 2
    for tag in plain:
        assert plain[tag] == lightning[tag], tag


def test_epochs_shorter_than_the_log_interval_log_the_same_points_without_a_warning(tiny_cfg, tmp_path, recwarn):
    """5 steps an epoch, a point every 7 steps: both sides log at the 7th and 14th step (0-based 6 and 13), and Lightning's warning
    that the epoch is shorter than its interval (it says no points would be seen) is not shown: it is not so here."""
    cfg = tiny_cfg.replace(epochs=3, log_every_n_steps=7)
    plain_train.fit(cfg.replace(output_dir=str(tmp_path / "plain")))
    lightning_train.fit(cfg.replace(output_dir=str(tmp_path / "lightning")))
    plain, lightning = scalars(tmp_path / "plain"), scalars(tmp_path / "lightning")
    assert [step for step, _ in plain["train_loss_step"]] == [6, 13]
    assert plain["train_loss_step"] == lightning["train_loss_step"]
    assert not [w for w in recwarn if "logging interval" in str(w.message)]
