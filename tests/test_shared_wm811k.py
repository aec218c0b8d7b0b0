"""The reader for real WM-811K data in the LSWMD.pkl layout, on small crafted frames (and the subset if given)."""

from __future__ import annotations

import pickle
import pickletools

import numpy as np
import pandas as pd
import pytest
import torch

import shared.wm811k as wm811k
from shared.config import CLASS_NAMES, TrainConfig
from shared.data import split_dataset
from shared.wm811k import load_wm811k, preprocess, read_lswmd, resize_codes

README_COUNTS = {"none": 17997, "Edge-Ring": 4743, "Edge-Loc": 2543, "Center": 2104, "Loc": 1760,
                 "Scratch": 585, "Random": 424, "Donut": 272, "Near-full": 73}


def label(name: str) -> np.ndarray:
    return np.array([[name]], dtype=object)


def wafer(rows: int, cols: int, seed: int) -> np.ndarray:
    """A disc of good (1) and failed (2) dies on a 0 background."""
    yy, xx = np.mgrid[:rows, :cols]
    disc = ((yy - (rows - 1) / 2) / (rows / 2)) ** 2 + ((xx - (cols - 1) / 2) / (cols / 2)) ** 2 <= 1
    fails = np.random.default_rng(seed).random((rows, cols)) < 0.3
    return np.where(disc, np.where(fails, 2, 1), 0).astype(np.uint8)


def lswmd_frame(rows: list[tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
    n = len(rows)
    return pd.DataFrame({
        "waferMap": [m for m, _ in rows],
        "dieSize": np.arange(n, dtype=float) + 500.0,
        "lotName": [f"lot{i // 3}" for i in range(n)],
        "waferIndex": np.arange(n, dtype=float) % 25 + 1,
        "trianTestLabel": [label("Training") if f.size else np.zeros((0, 0)) for _, f in rows],
        "failureType": [f for _, f in rows],
    })


@pytest.fixture
def small_frame() -> pd.DataFrame:
    """6 labelled maps of varying shape (one per listed class) and 2 unlabelled rows."""
    return lswmd_frame([
        (wafer(25, 27, 0), label("Center")),
        (wafer(26, 26, 1), np.zeros((0, 0))),
        (wafer(53, 52, 2), label("Edge-Ring")),
        (wafer(27, 25, 3), label("none")),
        (wafer(38, 36, 4), np.zeros((0, 0))),
        (wafer(33, 37, 5), label("Near-full")),
        (wafer(12, 10, 6), label("Scratch")),
        (wafer(45, 48, 7), label("Donut")),
    ])


EXPECTED_LABELS = [CLASS_NAMES.index(n) for n in ("Center", "Edge-Ring", "none", "Near-full", "Scratch", "Donut")]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("WAFER_BENCH_CACHE", str(folder))
    return folder


def test_preprocess_keeps_labelled_rows_and_encodes_labels(small_frame):
    maps = preprocess(small_frame, 16)
    assert maps.labels.tolist() == EXPECTED_LABELS and maps.labels.dtype == np.int64
    assert maps.codes.shape == (6, 16, 16) and maps.codes.dtype == np.uint8
    assert maps.skipped == {"unlabelled": 2, "empty_or_not_2d": 0, "bad_codes": 0}
    assert set(np.unique(maps.codes).tolist()) == {0, 1, 2}


def test_capitalised_none_is_the_clean_class(small_frame):
    small_frame.at[3, "failureType"] = label("None")
    assert preprocess(small_frame, 8).labels[2] == CLASS_NAMES.index("none")


@pytest.mark.parametrize("size", [8, 17, 64])
def test_nearest_neighbour_resize_keeps_codes(size):
    src = wafer(53, 52, 9)
    out = resize_codes(src, size)
    assert out.shape == (size, size) and out.dtype == np.uint8
    assert set(np.unique(out).tolist()) <= {0, 1, 2}
    # nearest-exact picks source pixel floor((i + 0.5) * in / out): check it exactly
    rows = np.floor((np.arange(size) + 0.5) * 53 / size).astype(int)
    cols = np.floor((np.arange(size) + 0.5) * 52 / size).astype(int)
    assert np.array_equal(out, src[np.ix_(rows, cols)])


def test_read_lswmd_plain_and_xz(tmp_path, small_frame):
    plain, packed = tmp_path / "LSWMD.pkl", tmp_path / "LSWMD_subset.pkl.xz"
    small_frame.to_pickle(plain)
    small_frame.to_pickle(packed)  # compression inferred from the suffix
    with open(packed, "rb") as fh:
        assert fh.read(6) == b"\xfd7zXZ\x00"  # really xz-compressed
    for path in (plain, packed):
        frame = read_lswmd(path)
        assert list(frame.columns) == list(small_frame.columns)
        assert preprocess(frame, 16).labels.tolist() == EXPECTED_LABELS


def test_read_lswmd_opens_old_module_pickle(tmp_path, small_frame):
    stream = pickle.dumps(small_frame, protocol=2)
    assert b"pandas.core.indexes" in stream
    old = stream.replace(b"pandas.core.indexes", b"pandas.indexes")
    globals_ = [arg for op, arg, _ in pickletools.genops(old) if op.name == "GLOBAL"]
    assert any(g.startswith("pandas.indexes.") for g in globals_)
    with pytest.raises(ModuleNotFoundError, match="pandas.indexes"):
        pickle.loads(old)
    path = tmp_path / "LSWMD.pkl"
    path.write_bytes(old)
    frame = read_lswmd(path)
    assert frame["dieSize"].tolist() == small_frame["dieSize"].tolist()
    assert preprocess(frame, 16).labels.tolist() == EXPECTED_LABELS


def test_truncated_old_module_pickle_is_a_value_error(tmp_path, small_frame):
    old = pickle.dumps(small_frame, protocol=2).replace(b"pandas.core.indexes", b"pandas.indexes")
    cut = old.index(b"pandas.indexes") + 40  # the plain reader fails on the module, the legacy one on EOF
    path = tmp_path / "LSWMD.pkl"
    path.write_bytes(old[:cut])
    with pytest.raises(ValueError, match="not a readable LSWMD pickle"):
        read_lswmd(path)


def test_missing_column_names_it(tmp_path, small_frame):
    path = tmp_path / "x.pkl"
    small_frame.drop(columns=["failureType"]).to_pickle(path)
    with pytest.raises(ValueError, match="failureType"):
        read_lswmd(path)


def test_unknown_label_names_label_and_row(small_frame):
    small_frame.at[5, "failureType"] = label("Hexagon")
    with pytest.raises(ValueError, match=r"row 5 .*'Hexagon'"):
        preprocess(small_frame, 8)


@pytest.mark.parametrize(("bad_map", "reason"), [
    (np.zeros((0, 0), np.uint8), "empty_or_not_2d"),
    (np.zeros((5, 0), np.uint8), "empty_or_not_2d"),
    (np.ones(9, np.uint8), "empty_or_not_2d"),
    (np.ones((3, 4, 4), np.uint8), "empty_or_not_2d"),
    (None, "empty_or_not_2d"),
    ([[1, 2, 1], [1, 2]], "empty_or_not_2d"),  # ragged
    (np.full((6, 6), 3, np.uint8), "bad_codes"),
    (np.array([[0, 1], [2, 255]], np.uint8), "bad_codes"),
    (np.array([[0, 1], [2, -1]]), "bad_codes"),
    (np.array([[1.0, 0.5], [2.0, 1.0]]), "bad_codes"),
])
def test_malformed_map_is_a_counted_skip(small_frame, bad_map, reason):
    small_frame["waferMap"] = small_frame["waferMap"].astype(object)
    small_frame.at[2, "waferMap"] = bad_map  # the Edge-Ring row
    maps = preprocess(small_frame, 8)
    expected = [y for y in EXPECTED_LABELS if y != CLASS_NAMES.index("Edge-Ring")]
    assert maps.labels.tolist() == expected  # dropped, not shifted onto a neighbour's label
    assert len(maps.codes) == len(maps.labels) == 5
    assert maps.skipped[reason] == 1 and maps.skipped["unlabelled"] == 2
    assert sum(maps.skipped.values()) == 3


def test_frame_without_labelled_maps_is_an_error(small_frame):
    with pytest.raises(ValueError, match="no labelled wafer maps"):
        preprocess(small_frame.iloc[[1, 4]], 8)


def test_non_dataframe_pickle_is_a_value_error(tmp_path):
    path = tmp_path / "list.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(ValueError, match="expected a pandas DataFrame, found list"):
        read_lswmd(path)


@pytest.mark.parametrize("suffix", [".pkl", ".pkl.xz"])
def test_truncated_file_is_a_value_error(tmp_path, small_frame, suffix):
    whole = tmp_path / f"whole{suffix}"
    small_frame.to_pickle(whole)
    data = whole.read_bytes()
    for cut in (0, 7, len(data) // 2, len(data) - 3):
        path = tmp_path / f"cut{suffix}"
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="not a readable LSWMD pickle"):
            read_lswmd(path)


def test_garbage_xz_is_a_value_error(tmp_path):
    path = tmp_path / "x.pkl.xz"
    path.write_bytes(b"not xz at all")
    with pytest.raises(ValueError, match="not a readable"):
        read_lswmd(path)


def test_second_load_reads_the_cache(tmp_path, cache, small_frame, monkeypatch):
    path = tmp_path / "LSWMD.pkl"
    small_frame.to_pickle(path)
    first = load_wm811k(path, 16)
    entries = list(cache.glob("*.npz"))
    assert len(entries) == 1 and "-s16-" in entries[0].name
    assert not [p for p in cache.iterdir() if p.suffix == ".tmp"]

    def fail(*args, **kwargs):
        raise AssertionError("preprocess called although the cache holds this file")

    monkeypatch.setattr(wm811k, "preprocess", fail)
    monkeypatch.setattr(wm811k, "read_lswmd", fail)
    second = load_wm811k(path, 16)
    assert np.array_equal(first.codes, second.codes) and np.array_equal(first.labels, second.labels)
    assert second.skipped == first.skipped == {"unlabelled": 2, "empty_or_not_2d": 0, "bad_codes": 0}


def test_changed_file_or_size_gets_a_new_cache_entry(tmp_path, cache, small_frame):
    path = tmp_path / "LSWMD.pkl"
    small_frame.to_pickle(path)
    load_wm811k(path, 16)
    load_wm811k(path, 8)
    assert len(list(cache.glob("*.npz"))) == 2
    small_frame.at[0, "failureType"] = label("Loc")
    small_frame.to_pickle(path)
    changed = load_wm811k(path, 16)
    assert len(list(cache.glob("*.npz"))) == 3
    assert changed.labels[0] == CLASS_NAMES.index("Loc")


@pytest.mark.slow
def test_real_subset_counts_and_split(real_data_path, cache, tmp_path):
    maps = load_wm811k(real_data_path, 32)
    assert maps.codes.shape == (30501, 32, 32)
    counts = np.bincount(maps.labels, minlength=len(CLASS_NAMES))
    assert {name: int(counts[i]) for i, name in enumerate(CLASS_NAMES)} == README_COUNTS
    assert set(np.unique(maps.codes).tolist()) == {0, 1, 2}
    assert maps.skipped["empty_or_not_2d"] == maps.skipped["bad_codes"] == 0

    cfg = TrainConfig(data=str(real_data_path), samples_per_class=0, image_size=32, accelerator="cpu",
                      output_dir=str(tmp_path / "run"))
    splits = split_dataset(cfg)  # reads the cache written above
    assert len(splits.train) + len(splits.val) + len(splits.test) == 30501
    for part in (splits.train, splits.val, splits.test):
        x, y = part.tensors
        assert x.shape == (len(part), 1, 32, 32) and x.dtype.is_floating_point
        assert set(torch.unique(x).tolist()) == {0.0, 0.5, 1.0}
        assert torch.unique(y).tolist() == list(range(9))
