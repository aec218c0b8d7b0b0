"""The real-data frontier driver without training: its table and plot from records, and its refusals."""

from __future__ import annotations

import json

import pytest

from benchmarks import frontier
from shared.config import CLASS_NAMES


def record(setting: str, side: str, minutes: float, f1: float) -> dict:
    return {"setting": setting, "side": side, "fit_seconds": 60 * minutes, "train_cpu_seconds": 50 * minutes,
            "loadavg_1min_after": 1.0, "epochs_run": 4, "f1_macro": f1, "accuracy": 0.9, "omp_num_threads": "1",
            "per_class_f1": {name: 0.5 for name in CLASS_NAMES},
            "machine": {"cpu": "Test CPU", "cores": 2, "torch": "2.x", "date": "today"}}


def test_render_writes_the_table_and_the_plot(tmp_path):
    records = [record("a", "plain", 3.0, 0.81), record("a", "lightning", 3.2, 0.81), record("b", "plain", 9.5, 0.88)]
    frontier.render(records, tmp_path)
    text = (tmp_path / "frontier.md").read_text()
    assert "| b " in text and "0.880" in text and "9.5" in text and "Lightning" in text
    assert "Test CPU (2 cores, OMP_NUM_THREADS=1)" in text
    assert (tmp_path / "frontier.png").stat().st_size > 10_000


def test_several_seeds_of_a_setting_get_a_mean_and_a_range(tmp_path):
    records = [record("a", "plain", 3.0, 0.80), {**record("a", "plain", 3.4, 0.86), "seed": 43},
               record("b", "plain", 9.5, 0.88)]
    frontier.render(records, tmp_path)
    text = (tmp_path / "frontier.md").read_text()
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in text.splitlines() if "0.800-0.860" in line]
    assert rows == [["a", "plain PyTorch", "2", "0.830", "0.800-0.860", "3.2", "42, 43"]]  # b has one seed: no row


def test_render_only_redraws_from_the_saved_records(tmp_path):
    (tmp_path / "frontier.json").write_text(json.dumps([record("a", "plain", 2.0, 0.8)]))
    frontier.main(["--render-only", "--report-dir", str(tmp_path)])
    assert "0.800" in (tmp_path / "frontier.md").read_text()


@pytest.mark.parametrize(("env", "argv", "message"), [
    (None, [], "set WM811K_PATH"),
    ("/no/such.pkl", [], "set WM811K_PATH"),
    ("FILE", ["--sides", "plain,jax"], "--sides plain,jax"),
    ("FILE", ["--seeds", "-1"], "argument --seeds: -1 is not in [0, 2**32)"),
    (None, ["--seeds", "42", "99999999999"], "argument --seeds: 99999999999 is not in [0, 2**32)"),
    ("FILE", ["--seeds", "abc"], "argument --seeds: 'abc' is not an integer"),
    ("FILE", ["--render-only"], "--render-only: no records in"),
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


def test_each_seed_trains_once_and_a_failed_run_keeps_the_table_of_those_before(tmp_path, monkeypatch):
    data = tmp_path / "data.pkl"
    data.write_bytes(b"x")
    monkeypatch.setenv("WM811K_PATH", str(data))
    calls = []

    def fake_run(name, side, data, work_dir, seed):
        calls.append(seed)
        if seed == 7:
            raise SystemExit(f"{name} ({side}, seed 7): exit 1: boom")
        return {**record(name, side, 3.0, 0.85), "seed": seed}

    monkeypatch.setattr(frontier, "run_setting", fake_run)
    name = next(iter(frontier.SETTINGS))
    with pytest.raises(SystemExit, match="seed 7"):
        frontier.main(["--settings", name, "--sides", "plain", "--seeds", "43", "43", "7",
                       "--report-dir", str(tmp_path / "out")])
    assert calls == [43, 7]  # the repeated 43 trains once
    saved = json.loads((tmp_path / "out" / "frontier.json").read_text())
    assert [r["seed"] for r in saved] == [43] and "| 43 " in (tmp_path / "out" / "frontier.md").read_text()
