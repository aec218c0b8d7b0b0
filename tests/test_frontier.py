"""The real-data frontier driver: ranking on validation, the test split read for the chosen setting only, its
table and plot, parallel runs, its refusals; and one tiny real run per side through the sides' CLIs."""

from __future__ import annotations

import json
import threading

import numpy as np
import pandas as pd
import pytest

from benchmarks import frontier
from shared.config import CLASS_NAMES


def scores(f1: float, support: int = 10) -> dict:
    return {"f1_macro": f1, "f1_macro_bootstrap_95": [f1 - 0.01, f1 + 0.01], "accuracy": 0.9,
            "per_class_f1": {name: 0.5 for name in CLASS_NAMES},
            "per_class_support": {name: support for name in CLASS_NAMES}}


def record(setting: str, side: str, minutes: float, val_f1: float, seed: int = 42, test_f1: float | None = None,
           ) -> dict:
    r = {"setting": setting, "side": side, "seed": seed, "accelerator": "cpu", "fit_seconds": 60 * minutes,
         "train_cpu_seconds": 50 * minutes, "loadavg_1min_after": 1.0, "epochs_run": 4, "omp_num_threads": "1",
         "best_checkpoint": f"/runs/{setting}-{side}-{seed}.pt", "val": scores(val_f1),
         "machine": {"cpu": "Test CPU", "cores": 2, "torch": "2.x", "date": "today"}}
    return r if test_f1 is None else {**r, "test": scores(test_f1, support=7)}


def table_rows(text: str, first_cell: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.split("|")[1:-1]] for line in text.splitlines()
            if line.startswith(f"| {first_cell} ")]


def test_render_writes_the_table_and_the_plot(tmp_path):
    records = [record("a", "plain", 3.0, 0.81), record("a", "lightning", 3.2, 0.81), record("b", "plain", 9.5, 0.88)]
    frontier.render(records, tmp_path)
    text = (tmp_path / "frontier.md").read_text()
    assert "| b " in text and "0.880" in text and "9.5" in text and "Lightning" in text
    assert "Test CPU (2 cores, OMP_NUM_THREADS=1), torch 2.x, cpu" in text
    assert "## Chosen on validation: b" in text and "has not been read yet" in text
    assert (tmp_path / "frontier.png").stat().st_size > 10_000


def test_the_choice_is_the_best_mean_validation_f1_and_test_shows_for_it_alone(tmp_path):
    # a: one lucky seed (0.90) but the lower mean; b: the better mean; c: a high test figure from an earlier choice
    records = [record("a", "plain", 3.0, 0.90), record("a", "plain", 3.0, 0.78, seed=43),
               record("b", "plain", 4.0, 0.86, test_f1=0.871), record("b", "plain", 4.0, 0.85, seed=43, test_f1=0.893),
               record("c", "plain", 5.0, 0.80, test_f1=0.990)]
    assert frontier.chosen_setting(records) == "b"
    frontier.render(records, tmp_path)
    text = (tmp_path / "frontier.md").read_text()
    per_run = [row for row in table_rows(text, "b") + table_rows(text, "c") if len(row) > 7]  # the first table
    assert [row[-1] for row in per_run] == ["0.871", "0.893", "-"] and "0.990" not in text  # c's test stays hidden
    assert table_rows(text, "plain PyTorch") == [["plain PyTorch", "2", "0.882", "0.871-0.893",
                                                  "42: 0.871 (0.861-0.881); 43: 0.893 (0.883-0.903)"]]
    assert table_rows(text, "Scratch") == [["Scratch", "plain PyTorch", "0.500", "0.500-0.500", "7, 7"]]
    assert "also read, by an earlier --choose, for: c" in text


def test_several_seeds_of_a_setting_get_a_mean_and_a_range_of_validation_f1(tmp_path):
    records = [record("a", "plain", 3.0, 0.80), record("a", "plain", 3.4, 0.86, seed=43),
               record("b", "plain", 9.5, 0.88)]
    frontier.render(records, tmp_path)
    rows = table_rows((tmp_path / "frontier.md").read_text(), "a")
    assert ["a", "plain PyTorch", "2", "0.830", "0.800-0.860", "3.2", "42, 43"] in rows  # b has one seed: no row


def test_render_only_redraws_from_the_saved_records(tmp_path):
    (tmp_path / "frontier.json").write_text(json.dumps([record("a", "plain", 2.0, 0.8)]))
    frontier.main(["--render-only", "--report-dir", str(tmp_path)])
    assert "0.800" in (tmp_path / "frontier.md").read_text()


def test_records_from_before_validation_ranking_are_refused(tmp_path, capsys):
    old = {k: v for k, v in record("a", "plain", 2.0, 0.8).items() if k != "val"} | {"f1_macro": 0.8}
    (tmp_path / "frontier.json").write_text(json.dumps([old]))
    with pytest.raises(SystemExit) as err:
        frontier.main(["--render-only", "--report-dir", str(tmp_path)])
    assert err.value.code == 2 and "1 records from before settings were ranked on validation" in capsys.readouterr().err


@pytest.fixture
def data_env(tmp_path, monkeypatch):
    data = tmp_path / "data.pkl"
    data.write_bytes(b"x")
    monkeypatch.setenv("WM811K_PATH", str(data))
    return data


@pytest.mark.parametrize(("env", "argv", "message"), [
    (None, [], "set WM811K_PATH"),
    ("/no/such.pkl", [], "set WM811K_PATH"),
    (None, ["--render-only", "--choose"], "set WM811K_PATH"),  # the chosen setting's test split needs the file
    ("FILE", ["--sides", "plain,jax"], "--sides plain,jax"),
    ("FILE", ["--seeds", "-1"], "argument --seeds: -1 is not in [0, 2**32)"),
    (None, ["--seeds", "42", "99999999999"], "argument --seeds: 99999999999 is not in [0, 2**32)"),
    ("FILE", ["--seeds", "abc"], "argument --seeds: 'abc' is not an integer"),
    ("FILE", ["--jobs", "0"], "argument --jobs: '0' is not a whole number >= 1"),
    ("FILE", ["--jobs", "two"], "argument --jobs: 'two' is not a whole number >= 1"),
    ("FILE", ["--render-only"], "--render-only: no records in"),
    (None, ["--render-only", "--tta"], "set WM811K_PATH"),  # scoring with TTA reads the validation split
])
def test_bad_input_is_refused_before_any_training(env, argv, message, tmp_path, monkeypatch, capsys):
    data = tmp_path / "data.pkl"
    data.write_bytes(b"x")
    if env is None:
        monkeypatch.delenv("WM811K_PATH", raising=False)
    else:
        monkeypatch.setenv("WM811K_PATH", str(data) if env == "FILE" else env)
    with pytest.raises(SystemExit) as err:
        frontier.main([*argv, "--report-dir", str(tmp_path / "out")])
    assert err.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_each_seed_trains_once_and_a_failed_run_keeps_the_table_of_those_before(tmp_path, data_env, monkeypatch):
    calls = []

    def fake_run(name, side, data, run_dir, seed, accelerator):
        calls.append(seed)
        if seed == 7:
            raise SystemExit(f"{name} ({side}, seed 7): exit 1: boom")
        return record(name, side, 3.0, 0.85, seed=seed)

    monkeypatch.setattr(frontier, "run_setting", fake_run)
    name = next(iter(frontier.SETTINGS))
    with pytest.raises(SystemExit, match="seed 7"):
        frontier.main(["--settings", name, "--sides", "plain", "--seeds", "43", "43", "7", "8",
                       "--report-dir", str(tmp_path / "out")])
    assert calls == [43, 7]  # the repeated 43 trains once; after the failure, 8 never starts
    saved = json.loads((tmp_path / "out" / "frontier.json").read_text())
    assert [r["seed"] for r in saved] == [43] and "| 43 " in (tmp_path / "out" / "frontier.md").read_text()


def test_jobs_runs_trainings_at_once_each_in_its_own_folder(tmp_path, data_env, monkeypatch):
    both_started = threading.Barrier(2, timeout=10)  # broken (an error) unless two runs are in flight together
    folders = []

    def fake_run(name, side, data, run_dir, seed, accelerator):
        folders.append(run_dir)
        both_started.wait()
        return record(name, side, 3.0, 0.85, seed=seed)

    monkeypatch.setattr(frontier, "run_setting", fake_run)
    name = next(iter(frontier.SETTINGS))
    frontier.main(["--settings", name, "--seeds", "1", "2", "--jobs", "2", "--report-dir", str(tmp_path / "out")])
    saved = json.loads((tmp_path / "out" / "frontier.json").read_text())
    assert sorted((r["side"], r["seed"]) for r in saved) == [("lightning", 1), ("lightning", 2), ("plain", 1),
                                                            ("plain", 2)]
    assert len(set(folders)) == 4 and {r["jobs"] for r in saved} == {2}
    assert "4 runs trained beside others (--jobs > 1)" in (tmp_path / "out" / "frontier.md").read_text()


def test_choose_reads_the_test_split_of_the_chosen_runs_once(tmp_path, data_env, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    records = [record("a", "plain", 3.0, 0.80), record("b", "plain", 3.0, 0.86), record("b", "lightning", 3.0, 0.86)]
    for r in records:
        r["best_checkpoint"] = str(tmp_path / f"{r['setting']}-{r['side']}.pt")
        (tmp_path / f"{r['setting']}-{r['side']}.pt").write_bytes(b"weights")
    (out / "frontier.json").write_text(json.dumps(records))
    reads = []

    def fake_evaluate(side, checkpoint, data, split, accelerator, tta=False):
        reads.append((side, checkpoint.name, split))
        return scores(0.9)

    monkeypatch.setattr(frontier, "evaluate_split", fake_evaluate)
    for _ in range(2):  # the second --choose finds the figures saved and reads nothing
        frontier.main(["--render-only", "--choose", "--report-dir", str(out)])
    assert sorted(reads) == [("lightning", "b-lightning.pt", "test"), ("plain", "b-plain.pt", "test")]
    saved = json.loads((out / "frontier.json").read_text())
    assert ["test" in r for r in saved] == [False, True, True]


def test_tta_scores_each_saved_run_once_as_its_own_setting_and_can_be_chosen(tmp_path, data_env, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    name, other = list(frontier.SETTINGS)[:2]
    records = [record(name, "plain", 3.0, 0.86), record(name, "plain", 3.0, 0.84, seed=43),
               record(other, "plain", 4.0, 0.80)]
    for r in records:
        r["best_checkpoint"] = str(tmp_path / f"{r['seed']}-{r['setting']}.pt")
        (tmp_path / f"{r['seed']}-{r['setting']}.pt").write_bytes(b"weights")
    (out / "frontier.json").write_text(json.dumps(records))
    reads = []

    def fake_evaluate(side, checkpoint, data, split, accelerator, tta=False):
        reads.append((checkpoint.name, split, tta))
        return scores(0.9 if tta else 0.7)

    monkeypatch.setattr(frontier, "evaluate_split", fake_evaluate)
    for _ in range(2):  # the second call finds the TTA records saved and scores nothing again
        frontier.main(["--render-only", "--tta", "--settings", name, "--choose", "--report-dir", str(out)])
    tta_name = name + frontier.TTA_SUFFIX
    assert sorted(reads) == [(f"{seed}-{name}.pt", split, True) for seed in (42, 43) for split in ("test", "val")]
    saved = json.loads((out / "frontier.json").read_text())
    added = [r for r in saved if r["setting"] == tta_name]
    assert [(r["seed"], r["tta"], r["val"]["f1_macro"], r["test"]["f1_macro"]) for r in added] == \
        [(42, True, 0.9, 0.9), (43, True, 0.9, 0.9)]
    assert [r["fit_seconds"] for r in added] == [180.0, 180.0] and not any(r.get("tta") for r in saved[:3])
    text = (out / "frontier.md").read_text()
    assert f"## Chosen on validation: {tta_name}" in text and "scored again with test-time augmentation" in text


def test_a_run_trained_again_drops_the_tta_record_of_its_old_checkpoint(tmp_path, data_env, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    name = next(iter(frontier.SETTINGS))
    old = [record(name, "plain", 3.0, 0.8), {**record(name + frontier.TTA_SUFFIX, "plain", 3.0, 0.9), "tta": True}]
    (out / "frontier.json").write_text(json.dumps(old))
    monkeypatch.setattr(frontier, "run_setting", lambda name, side, *args: record(name, side, 5.0, 0.85))
    frontier.main(["--settings", name, "--sides", "plain", "--report-dir", str(out)])
    saved = json.loads((out / "frontier.json").read_text())
    assert [(r["setting"], r["fit_seconds"]) for r in saved] == [(name, 300.0)]


def lswmd(path, per_class: int = 12):
    """A tiny LSWMD-format pickle: per_class random maps of each class."""
    rng = np.random.default_rng(0)
    rows = [(rng.integers(0, 3, size=(26, 26)).astype(np.uint8), np.array([[name]]))
            for name in CLASS_NAMES for _ in range(per_class)]
    pd.DataFrame({"waferMap": [r[0] for r in rows], "failureType": [r[1] for r in rows]}).to_pickle(path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("side", ["plain", "lightning"])
def test_a_real_run_is_scored_on_validation_then_on_test_when_chosen(side, tmp_path, monkeypatch):
    monkeypatch.setenv("WM811K_PATH", str(lswmd(tmp_path / "mini.pkl")))
    monkeypatch.setenv("WAFER_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(frontier, "_BASE", ("--samples-per-class", "5", "--batch-size", "16", "--base-channels", "8",
                                            "--no-plots"))
    monkeypatch.setattr(frontier, "SETTINGS", {"tiny": ("--image-size", "32", "--epochs", "2")})
    frontier.main(["--sides", side, "--seeds", "7", "--choose", "--report-dir", str(tmp_path / "out")])
    (saved,) = json.loads((tmp_path / "out" / "frontier.json").read_text())
    run = json.loads((tmp_path / "out" / "frontier.json").parent.parent.joinpath(
        ".frontier-runs", f"0-{side}", "metrics.json").read_text())
    val, test = saved["val"], saved["test"]
    assert sum(val["per_class_support"].values()) == 16 and sum(test["per_class_support"].values()) == 17
    assert test["f1_macro"] == run["test"]["f1_macro"]  # the run's own test figure, read only now
    assert val["f1_macro_bootstrap_95"][0] <= val["f1_macro"] <= val["f1_macro_bootstrap_95"][1]
    assert saved["best_checkpoint"].endswith(".pt" if side == "plain" else ".ckpt")
    assert "## Chosen on validation: tiny" in (tmp_path / "out" / "frontier.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("side", ["plain", "lightning"])
def test_tta_scores_a_real_run_again_through_evaluate_tta(side, tmp_path, monkeypatch):
    monkeypatch.setenv("WM811K_PATH", str(lswmd(tmp_path / "mini.pkl")))
    monkeypatch.setenv("WAFER_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(frontier, "_BASE", ("--samples-per-class", "5", "--batch-size", "16", "--base-channels", "8",
                                            "--no-plots"))
    monkeypatch.setattr(frontier, "SETTINGS", {"tiny": ("--image-size", "32", "--epochs", "2")})
    frontier.main(["--sides", side, "--seeds", "7", "--tta", "--report-dir", str(tmp_path / "out")])
    plain, tta = json.loads((tmp_path / "out" / "frontier.json").read_text())
    assert (plain["setting"], tta["setting"], tta["tta"]) == ("tiny", "tiny, TTA", True)
    assert tta["best_checkpoint"] == plain["best_checkpoint"] and "test" not in tta
    assert sum(tta["val"]["per_class_support"].values()) == 16
    scored = json.loads((tmp_path / ".frontier-runs" / f"0-{side}" / "evaluate-val-tta" / "metrics.json").read_text())
    assert scored["config"]["tta"] is True and scored["test"]["f1_macro"] == tta["val"]["f1_macro"]


def test_the_real_profile_trains_the_setting_the_frontier_chose() -> None:
    """The `real` profile is the frontier's chosen setting (its TTA variant: --tta scores the test split so), with the
    frontier's common flags; --monitor val_loss is the default both use."""
    from benchmarks.profiles import PROFILES

    def pairs(flags) -> set[tuple[str, ...]]:
        out, i = set(), 0
        while i < len(flags):
            valued = i + 1 < len(flags) and not flags[i + 1].startswith("--")
            out.add(tuple(flags[i:i + 2]) if valued else (flags[i],))
            i += 2 if valued else 1
        return out

    chosen = "48px, balanced sampler ** 0.5, cosine 30 epochs"
    records = frontier.load_records(frontier.ROOT / frontier.REPORT_DIR / "frontier.json")
    assert frontier.chosen_setting(records) == chosen + frontier.TTA_SUFFIX  # the committed frontier's pick
    expected = pairs([*frontier._BASE, *frontier.SETTINGS[chosen]]) | {("--tta",), ("--monitor", "val_loss")}
    assert pairs(PROFILES["real"].train_flags) == expected
