"""Splits, subsampling, class weights, loaders and augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import shared.data as data
from shared.config import CLASS_NAMES, TrainConfig
from shared.data import class_mix, make_dataloaders, random_dihedral, split_dataset, subsample, to_inputs
from shared.wm811k import WaferMaps

SIZE = 8
DIGITS = 10  # the first 10 pixels spell a map's id in base 3 (up to 59,048 maps)


def id_maps(counts: list[int]) -> WaferMaps:
    """Maps whose pixels spell their own index in base 3, so a split's inputs reveal which maps it holds."""
    labels = np.repeat(np.arange(len(counts)), counts).astype(np.int64)
    ids = np.arange(len(labels))
    codes = np.zeros((len(ids), SIZE * SIZE), dtype=np.uint8)
    codes[:, :DIGITS] = (ids[:, None] // 3 ** np.arange(DIGITS)) % 3
    return WaferMaps(codes.reshape(-1, SIZE, SIZE), labels)


def ids_of(dataset) -> np.ndarray:
    codes = torch.round(dataset.tensors[0] * 2).long().reshape(len(dataset), -1).numpy()
    return (codes[:, :DIGITS] * 3 ** np.arange(DIGITS)).sum(axis=1)


@pytest.fixture
def fake_maps(monkeypatch):
    """Replace the data source with id-coded maps of the given per-class counts."""
    def install(counts):
        maps = id_maps(counts)
        monkeypatch.setattr(data, "load_maps", lambda cfg: maps)
        return maps
    return install


@pytest.mark.parametrize("counts", [[40] * 9, [300, 10, 120, 200, 80, 10, 20, 25, 700]])
def test_split_is_stratified_disjoint_and_complete(tiny_cfg, fake_maps, counts):
    maps = fake_maps(counts)
    cfg = tiny_cfg.replace(image_size=SIZE)
    splits = split_dataset(cfg)
    parts = {name: ids_of(getattr(splits, name)) for name in ("train", "val", "test")}
    for name, ids in parts.items():  # labels travel with their maps
        assert np.array_equal(getattr(splits, name).tensors[1].numpy(), maps.labels[ids])
    all_ids = np.concatenate(list(parts.values()))
    assert np.array_equal(np.sort(all_ids), np.arange(sum(counts)))  # disjoint and complete
    fractions = {"train": 1 - cfg.val_fraction - cfg.test_fraction, "val": cfg.val_fraction,
                 "test": cfg.test_fraction}
    for name, ids in parts.items():
        got = np.bincount(maps.labels[ids], minlength=9)
        assert np.all(got >= 1), (name, got)
        assert np.all(np.abs(got - np.array(counts) * fractions[name]) <= 1 + 1e-9), (name, got)


def test_real_data_cap_thins_only_the_training_split(tiny_cfg, fake_maps, tmp_path):
    counts = [300, 10, 120, 200, 80, 10, 20, 25, 700]
    maps = fake_maps(counts)
    (tmp_path / "LSWMD.pkl").write_bytes(b"")  # load_maps is replaced; the path only has to exist
    cfg = tiny_cfg.replace(image_size=SIZE, data=str(tmp_path / "LSWMD.pkl"), samples_per_class=50)
    splits = split_dataset(cfg)
    train = np.bincount(maps.labels[ids_of(splits.train)], minlength=9)
    assert train.max() == 50 and np.all(np.abs(train - np.minimum(50, np.array(counts) * 0.7)) <= 1), train
    for name, fraction in (("val", cfg.val_fraction), ("test", cfg.test_fraction)):  # the natural mix, stratified
        got = np.bincount(maps.labels[ids_of(getattr(splits, name))], minlength=9)
        assert np.all(np.abs(got - np.array(counts) * fraction) <= 1 + 1e-9), (name, got)
    assert class_mix(cfg).startswith("natural") and class_mix(tiny_cfg) == "synthetic, balanced"


def test_split_is_deterministic_for_a_seed(tiny_cfg, fake_maps):
    fake_maps([30] * 9)
    cfg = tiny_cfg.replace(image_size=SIZE)
    a, b, c = split_dataset(cfg), split_dataset(cfg), split_dataset(cfg.replace(seed=8))
    for name in ("train", "val", "test"):
        assert np.array_equal(ids_of(getattr(a, name)), ids_of(getattr(b, name)))
    assert not np.array_equal(np.sort(ids_of(a.test)), np.sort(ids_of(c.test)))


def test_class_weights_are_balanced_over_the_training_split(tiny_cfg, fake_maps):
    fake_maps([300, 10, 120, 200, 80, 10, 20, 25, 700])
    splits = split_dataset(tiny_cfg.replace(image_size=SIZE))
    y = splits.train.tensors[1].numpy()
    counts = np.bincount(y, minlength=9)
    expected = len(y) / (9 * counts)  # sklearn's "balanced": n_samples / (n_classes * count)
    assert splits.class_weights.dtype == torch.float32
    assert np.allclose(splits.class_weights.numpy(), expected, rtol=1e-6)
    assert splits.class_weights[1] > splits.class_weights[8]  # rare class weighs more


def test_class_weight_power_softens_the_balanced_weights(tiny_cfg, fake_maps):
    fake_maps([300, 10, 120, 200, 80, 10, 20, 25, 700])
    cfg = tiny_cfg.replace(image_size=SIZE, class_weights=True)
    balanced = split_dataset(cfg).class_weights.numpy()
    soft = split_dataset(cfg.replace(class_weight_power=0.5)).class_weights.numpy()
    assert np.allclose(soft, np.sqrt(balanced), rtol=1e-6)
    assert 1 < soft[1] < balanced[1] and balanced[8] < soft[8] < 1  # rare classes weigh less, 'none' more


def test_too_few_maps_is_a_clear_error(tiny_cfg, fake_maps, tmp_path):
    fake_maps([20, 20, 20, 20, 20, 1, 20, 20, 20])
    with pytest.raises(ValueError, match="raise --samples-per-class"):
        split_dataset(tiny_cfg.replace(image_size=SIZE))
    # a real file: --samples-per-class caps the training split only, so it cannot help
    real = tmp_path / "few.pkl"
    real.write_bytes(b"")
    with pytest.raises(ValueError, match=f"{real} needs more maps of each class") as err:
        split_dataset(tiny_cfg.replace(image_size=SIZE, data=str(real)))
    assert "--samples-per-class" not in str(err.value)


def test_synthetic_split_end_to_end(tiny_cfg):
    splits = split_dataset(tiny_cfg)
    assert len(splits.train) + len(splits.val) + len(splits.test) == 9 * 12
    x, y = splits.train.tensors
    assert x.shape[1:] == (1, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert set(torch.unique(x).tolist()) <= {0.0, 0.5, 1.0}
    assert "108 maps" in data.describe(tiny_cfg, splits)


def test_unbalanced_synthetic_default_size_splits(tiny_cfg):
    """--no-balance-classes at the default 100 maps: Near-full must still reach every split."""
    splits = split_dataset(tiny_cfg.replace(samples_per_class=100, balance_classes=False, image_size=16))
    for part in (splits.train, splits.val, splits.test):
        assert torch.unique(part.tensors[1]).tolist() == list(range(9))
    assert torch.bincount(splits.train.tensors[1]).argmax().item() == CLASS_NAMES.index("none")


def test_subsample_cap_and_balance():
    labels = np.repeat(np.arange(9), [500, 40, 300, 900, 200, 12, 50, 60, 2000])
    counts = lambda keep: np.bincount(labels[keep], minlength=9).tolist()  # noqa: E731
    assert np.array_equal(subsample(labels, 0, True, 0), np.arange(len(labels)))   # 0 = no cap
    assert np.array_equal(subsample(labels, 0, False, 0), np.arange(len(labels)))
    assert counts(subsample(labels, 100, True, 0)) == [100, 40, 100, 100, 100, 12, 50, 60, 100]
    # unbalanced: the largest class gets the cap, the rest keep their proportions (floor of 10, or all they have)
    assert counts(subsample(labels, 1000, False, 0)) == [250, 20, 150, 450, 100, 10, 25, 30, 1000]
    assert counts(subsample(labels, 100, False, 0)) == [25, 10, 15, 45, 10, 10, 10, 10, 100]
    assert counts(subsample(labels, 5000, False, 0)) == np.bincount(labels).tolist()  # cap above the largest
    keep = subsample(labels, 100, True, 3)
    assert np.array_equal(keep, np.unique(keep))  # sorted, no repeats
    assert np.array_equal(keep, subsample(labels, 100, True, 3))
    assert not np.array_equal(keep, subsample(labels, 100, True, 4))


def test_subsample_with_an_absent_class():
    labels = np.repeat([0, 2], [30, 5])
    assert np.bincount(labels[subsample(labels, 10, False, 0)], minlength=3).tolist() == [10, 0, 5]
    assert np.bincount(labels[subsample(labels, 10, True, 0)], minlength=3).tolist() == [10, 0, 5]


def batches(loader) -> list[list[int]]:
    return [ids_of(torch.utils.data.TensorDataset(x, y)).tolist() for x, y in loader]


def test_train_loader_order_is_a_function_of_seed_and_epoch(tiny_cfg, fake_maps):
    fake_maps([20] * 9)
    cfg = tiny_cfg.replace(image_size=SIZE, batch_size=8)
    splits = split_dataset(cfg)

    def order(epoch, cfg=cfg):
        train, _, _ = make_dataloaders(cfg, splits)
        train.sampler.set_epoch(epoch)
        return batches(train)

    first = order(0)
    assert [len(b) for b in first[:-1]] == [8] * (len(first) - 1)
    assert sorted(sum(first, [])) == sorted(ids_of(splits.train).tolist())  # each map once per epoch
    assert order(0) == first  # fresh loaders, same cfg and epoch
    assert order(1) != first and sorted(sum(order(1), [])) == sorted(sum(first, []))
    assert order(0, cfg.replace(seed=8)) != first
    _, val, test = make_dataloaders(cfg, splits)
    assert sum(batches(val), []) == ids_of(splits.val).tolist()  # evaluation keeps split order
    assert sum(batches(test), []) == ids_of(splits.test).tolist()


def test_train_loader_shards_per_rank(tiny_cfg, fake_maps):
    fake_maps([20] * 9)  # 180 maps, 126 in train: even, so no padding repeats
    cfg = tiny_cfg.replace(image_size=SIZE, batch_size=8)
    splits = split_dataset(cfg)
    assert len(splits.train) % 2 == 0
    shards = []
    for rank in (0, 1):
        train, _, _ = make_dataloaders(cfg, splits, rank=rank, world_size=2)
        train.sampler.set_epoch(3)
        shards.append(sum(batches(train), []))
    assert len(shards[0]) == len(shards[1]) == len(splits.train) // 2
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == sorted(ids_of(splits.train).tolist())


def test_balanced_sampler_draw_is_a_function_of_seed_and_epoch(tiny_cfg, fake_maps):
    fake_maps([300, 10, 120, 200, 80, 10, 20, 25, 700])
    cfg = tiny_cfg.replace(image_size=SIZE, batch_size=64, balance_classes=False, sampler="balanced")
    splits = split_dataset(cfg)

    def order(epoch, cfg=cfg):
        train, _, _ = make_dataloaders(cfg, splits)
        assert isinstance(train.sampler, data.ClassBalancedSampler)
        train.sampler.set_epoch(epoch)
        return sum(batches(train), [])

    first = order(0)
    assert len(first) == len(splits.train) and len(set(first)) < len(first)  # with replacement
    assert order(0) == first and order(1) != first and order(0, cfg.replace(seed=8)) != first


# class shares of the draw are count ** (1 - power), normalised: 900/90/10 maps -> rare class 1/3, 0.074, 0.01
@pytest.mark.parametrize(("power", "rare_share"), [(1.0, 1 / 3), (0.5, 10**0.5 / (900**0.5 + 90**0.5 + 10**0.5)),
                                                   (0.0, 0.01)])
def test_balanced_sampler_power_moves_from_the_natural_mix_to_equal_classes(power, rare_share):
    labels = torch.tensor([0] * 900 + [1] * 90 + [2] * 10)
    drawn = labels[list(data.ClassBalancedSampler(labels, power, seed=3))]
    assert len(drawn) == 1000
    assert abs((drawn == 2).float().mean().item() - rare_share) < 0.03


def test_balanced_sampler_shards_are_equal_and_together_the_whole_draw():
    labels = torch.tensor([0] * 60 + [1] * 7)  # 67 maps: 34 draws per rank, 68 in all
    shards = []
    for rank in (0, 1):
        sampler = data.ClassBalancedSampler(labels, 1.0, seed=5, rank=rank, world_size=2)
        sampler.set_epoch(2)
        shards.append(list(sampler))
    assert len(shards[0]) == len(shards[1]) == 34
    whole = torch.multinomial(data.ClassBalancedSampler(labels, 1.0, seed=5).weights, 68, replacement=True,
                              generator=torch.Generator().manual_seed(5 + 2)).tolist()
    assert shards[0] == whole[0::2] and shards[1] == whole[1::2]  # draw positions split, none shared


def test_to_inputs_scales_codes():
    x = to_inputs(np.array([[[0, 1], [2, 1]]], dtype=np.uint8))
    assert x.shape == (1, 1, 2, 2) and x.dtype == torch.float32
    assert x.flatten().tolist() == [0.0, 0.5, 1.0, 0.5]


def test_random_dihedral_permutes_pixels_and_is_seeded():
    x = torch.arange(64 * 3 * 5 * 5, dtype=torch.float32).reshape(64, 3, 5, 5)
    torch.manual_seed(0)
    out = random_dihedral(x)
    assert out.shape == x.shape
    assert torch.equal(out.flatten(1).sort(dim=1).values, x.flatten(1).sort(dim=1).values)
    for i in range(len(x)):  # each map is one of the 8 symmetries of itself
        candidates = [torch.rot90(x[i], k, dims=(-2, -1)) for k in range(4)]
        candidates += [c.flip(-1) for c in candidates]
        assert any(torch.equal(out[i], c) for c in candidates)
    assert sum(torch.equal(out[i], x[i]) for i in range(len(x))) < 32  # most maps moved
    torch.manual_seed(0)
    assert torch.equal(random_dihedral(x), out)
    torch.manual_seed(1)
    assert not torch.equal(random_dihedral(x), out)
    assert torch.equal(x, torch.arange(x.numel(), dtype=torch.float32).reshape(x.shape))  # input untouched


@pytest.mark.parametrize("world_size", [1, 2])
def test_data_on_device_serves_the_same_batches_in_the_same_order(tiny_cfg, world_size):
    cfg = tiny_cfg.replace(batch_size=8, augment=True)
    splits = split_dataset(cfg)
    default = make_dataloaders(cfg, splits, rank=world_size - 1, world_size=world_size)
    on_device = make_dataloaders(cfg.replace(data_on_device=True), splits, rank=world_size - 1,
                                 world_size=world_size, pin_memory=True, device=torch.device("cpu"))
    assert on_device[0].pin_memory is False  # the tensors are already where the step runs
    for epoch in (0, 1):
        default[0].sampler.set_epoch(epoch)
        on_device[0].sampler.set_epoch(epoch)
        for ours, theirs in zip(default, on_device):
            pairs = list(zip(ours, theirs, strict=True))
            assert pairs and all(torch.equal(a, b) for (xa, ya), (xb, yb) in pairs for a, b in ((xa, xb), (ya, yb)))


def test_data_on_device_refuses_worker_processes():
    with pytest.raises(ValueError, match="num_workers"):
        TrainConfig(data_on_device=True, num_workers=2)
