"""The benchmark harness without training: run records, summaries, and a report that survives failures."""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest

from benchmarks import formatting
from benchmarks import report as report_mod
from benchmarks.profiles import PROFILES
from benchmarks.runner import MODULES, RunRecord, failure_reason, run_training
from benchmarks.suite import plan, run_once_more_if_ddp
from benchmarks.summary import clustered_interval, errors, paired_ratio, retried, spread, summarize, t_interval
from shared.config import CLASS_NAMES

CONFIG = {"data": "synthetic", "samples_per_class": 12, "balance_classes": True, "image_size": 32,
          "val_fraction": 0.15, "test_fraction": 0.15, "seed": 1, "monitor": "val_loss", "output_dir": "x"}


def fake_metrics(seed: int, loss_shift: float = 0.0) -> dict:
    steps = 3
    return {"config": {**CONFIG, "seed": seed}, "steps_per_epoch": steps, "epochs_run": 3, "world_size": 1,
            "history": [{"epoch": e, "train_loss": 1.0 - 0.1 * e, "val_loss": 1.1 - 0.1 * e, "train_seconds": 0.3}
                        for e in range(3)],
            "step_losses": [1.0 + loss_shift] * (steps * 3), "first_step_unix": 105.0, "fit_seconds": 1.0,
            "initial_weights_sha256": "a", "final_weights_sha256": "b", "peak_cuda_memory_bytes": None,
            "test": {"accuracy": 0.5 + seed / 100, "precision_macro": 0.5, "recall_macro": 0.5, "f1_macro": 0.5,
                     "per_class": {name: {"precision": 0.5, "recall": 0.5, "f1": 0.25 + i / 100, "support": 3}
                                   for i, name in enumerate(CLASS_NAMES)},
                     "confusion_matrix": [[1] * 9 for _ in range(9)]}}


def fake_run(side: str, r: int, ok: bool = True, kind: str = "end_to_end", label: str = "full") -> dict:
    rec = RunRecord(side, kind, label, "cpu", r, 10 + r, ["python"], ok=ok, wall_seconds=10.0 + r,
                    launch_unix=100.0, max_rss_bytes=300 * 2**20,
                    metrics=fake_metrics(10 + r) if ok else None, error=None if ok else "exit 1: Boom")
    return rec.to_dict()


def fake_raw(runs: list[dict]) -> dict:
    return {"profile": "smoke", "profile_notes": "test", "machine": {
        "cpu": "test cpu", "cores": 2, "memory_gib": 1, "gpu": None, "python": "3", "torch": "t", "lightning": "l",
        "os": "linux", "date": "today"},
        "lines_of_code": {"plain_pytorch": {"plain_pytorch/train.py": {"raw": 10, "source": 8, "statements": 6},
                                            "plain_pytorch/recorder.py": {"raw": 4, "source": 3, "statements": 2}},
                          "lightning_impl": {"lightning_impl/train.py": {"raw": 6, "source": 5, "statements": 4},
                                             "lightning_impl/train.py:aligned_trainer_settings":
                                                 {"raw": 5, "source": 4, "statements": 1},
                                             "lightning_impl/recorder.py": {"raw": 9, "source": 7, "statements": 5}},
                          "shared": {"shared/x.py": {"raw": 3, "source": 2, "statements": 2}}},
        "accelerators": {"cpu": {"imports": {"plain": [1.0, 1.2], "lightning": [2.0, 2.2]}, "runs": runs,
                                 "flops_per_sample": 1e6, "ceiling": {"flops_per_s": 1e10}}}}


def test_spread_and_paired_ratio() -> None:
    s = spread([1.0, 2.0, 3.0, 4.0])
    assert (s["median"], s["q1"], s["q3"], s["n"]) == (2.5, 1.75, 3.25, 4)
    r = paired_ratio([2.0, 4.0, 6.0], [1.0, 2.0, 2.0])
    assert r["median"] == 2.0 and r["n"] == 3 and r["ratio"] == pytest.approx(12 ** (1 / 3))
    assert r["ci95"] is None and r["range"] == [2.0, 3.0]  # 3 rounds: a range, never called a CI
    assert report_mod.fmt_ratio(r) == "2.29x (range 2.00-3.00, n=3)"
    assert spread([]) is None and paired_ratio([], []) is None


def test_t_interval_on_log_ratios_covers_at_n_20() -> None:
    """Simulated A/A pairs with 5 % noise: the 95 % interval holds 1.00 in about 95 % of experiments."""
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(400):
        a, b = rng.lognormal(0, 0.05, 20), rng.lognormal(0, 0.05, 20)
        low, high = paired_ratio(list(a), list(b))["ci95"]
        hits += low <= 1.0 <= high
    assert 0.92 <= hits / 400 <= 0.98
    ci = t_interval([1.0, 2.0, 3.0])
    assert ci["mean"] == 2.0 and ci["half_width"] == pytest.approx(4.303 * 1 / np.sqrt(3), rel=1e-3)


def test_summary_parity_and_metrics() -> None:
    runs = [fake_run(side, r) for r in range(2) for side in ("plain", "lightning")]
    summary = summarize(fake_raw(runs))["cpu"]
    assert [p["max_step_loss_diff_epoch0"] for p in summary["parity"]] == [0.0, 0.0]
    assert all(p["initial_weights_identical"] for p in summary["parity"])
    assert summary["runtime"]["step_ms"]["sides"]["plain"]["median"] == pytest.approx(100.0)
    assert summary["runtime"]["first_step_seconds"]["sides"]["lightning"]["median"] == pytest.approx(5.0)
    assert summary["runtime"]["import_seconds"]["ratio"]["median"] == pytest.approx((2.0 / 1.0 + 2.2 / 1.2) / 2)
    assert summary["final_metrics"]["accuracy"]["plain"]["mean"] == pytest.approx(0.605)
    assert summary["final_metrics"]["per_class_f1"]["lightning"]["Scratch"] == pytest.approx(0.32)


def test_report_written_when_one_side_fails(tmp_path) -> None:
    runs = [fake_run("plain", r) for r in range(2)] + [fake_run("lightning", r, ok=False) for r in range(2)]
    raw = fake_raw(runs)
    out = report_mod.write_report(raw, summarize(raw), tmp_path / "smoke")
    text = (out / "comparison.md").read_text()
    assert "## Failed runs" in text and "exit 1: Boom" in text
    assert "not measured" in text  # the failed side's cells
    assert json.loads((out / "benchmark.json").read_text())["raw"]["profile"] == "smoke"
    assert (out / "runtime.png").read_bytes()[:4] == b"\x89PNG"
    assert "| CPU      | Scratch   | 0.320" in text  # per-class F1 of the side that ran


def test_loc_table_separates_training_parity_settings_and_measurement() -> None:
    text = "\n".join(report_mod.loc_section(fake_raw([])["lines_of_code"]))
    assert re.search(r"\| \*\*plain_pytorch/ training\*\* +\| training +\| 10 +\| 8 +\| 6 ", text)
    assert re.search(r"\| \*\*lightning_impl/ measurement\*\* +\| measurement +\| 9 +\| 7 +\| 5 ", text)
    assert re.search(r"\| lightning_impl/train.py:aligned_trainer_settings +\| parity settings +\| 5 +\| 4 +\| 1 ", text)
    assert re.search(r"\| \*\*plain_pytorch/ parity settings\*\* +\| parity settings +\| 0 +\| 0 +\| 0 ", text)
    assert re.search(r"\| \*\*total lightning_impl/\*\* +\| +\| 20 +\| 16 +\| 10 ", text)
    # the headline compares training code only: 5 vs 8, not 16 vs 11 with the parity settings and recorders
    assert ("Lightning's side has 5 training source lines against plain PyTorch's 8 (0.62x); parity settings 4 vs 0; "
            "measurement 7 vs 3") in text
    assert re.search(r"\| parity settings \(the same work as the other side\) +\| +0 +\| +4 +\| +-4 ", text)
    claims = "\n".join(report_mod.claims_section(fake_raw([]), {}))
    assert "8 vs 5 training source lines (+2 shared)" in claims


def test_rerender_rebuilds_the_report_from_its_json(tmp_path) -> None:
    runs = [fake_run(side, r) for r in range(2) for side in ("plain", "lightning")]
    raw = fake_raw(runs)
    out = report_mod.write_report(raw, summarize(raw), tmp_path / "smoke")
    (out / "comparison.md").write_text("stale")
    report_mod.rerender(out)
    assert (out / "comparison.md").read_text() == report_mod.render_markdown(raw, summarize(raw))


def test_failed_report_write_keeps_the_previous_report(tmp_path, monkeypatch) -> None:
    runs = [fake_run(side, r) for r in range(2) for side in ("plain", "lightning")]
    raw = fake_raw(runs)
    out = report_mod.write_report(raw, summarize(raw), tmp_path / "smoke")
    before = (out / "comparison.md").read_text()

    def crash(*_args):
        raise RuntimeError("plotting crashed")

    monkeypatch.setattr(report_mod.plots, "write_all", crash)
    with pytest.raises(RuntimeError, match="plotting crashed"):
        report_mod.write_report(raw, summarize(raw), tmp_path / "smoke")
    assert (out / "comparison.md").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["smoke"]  # no temp folders left


def test_run_training_records_failure_and_timeout(tmp_path) -> None:
    fail = RunRecord("plain", "end_to_end", "full", "cpu", 0, 1,
                     [sys.executable, "-c", "import sys; print('bad flag --epochs'); sys.exit(2)"])
    run_training(fail, tmp_path / "fail", timeout_s=60)
    assert not fail.ok and fail.error == "exit 2: bad flag --epochs" and fail.max_rss_bytes > 0
    slow = RunRecord("plain", "end_to_end", "full", "cpu", 0, 1, [sys.executable, "-c", "import time; time.sleep(30)"])
    run_training(slow, tmp_path / "slow", timeout_s=1)
    assert not slow.ok and slow.error.startswith("timed out") and slow.wall_seconds < 10
    assert fail.log_tail == ["bad flag --epochs"] and slow.log_tail == []


# fails (exit 1, after an error line) the first time it runs in a folder tree, then writes metrics.json
FLAKY = ("import json, pathlib, sys; out = pathlib.Path(sys.argv[-1]); mark = out.parent / 'tried'\n"
         "if not mark.exists(): mark.touch(); print('RuntimeError: Connection closed by peer'); sys.exit(1)\n"
         "out.mkdir(parents=True, exist_ok=True); (out / 'metrics.json').write_text(json.dumps({'ok': 1}))")


@pytest.mark.parametrize("processes", [2, 1])
def test_only_a_failed_ddp_launch_is_started_again_and_says_so(processes, tmp_path) -> None:
    record = RunRecord("plain", "variant", "ddp, 2 processes", "cpu", 0, 1, [sys.executable, "-c", FLAKY],
                       processes=processes)
    said = []
    done = run_once_more_if_ddp(record, tmp_path / "run", 60, None, lambda r, again="": said.append((r.ok, again)))
    if processes == 1:  # a one-process run has no launcher to blame: its failure stands
        assert not done.ok and done.retried_after is None and said == [(False, "")]
        return
    assert done.ok and done.metrics == {"ok": 1} and said == [(False, ""), (True, " again")]
    assert done.retried_after == "exit 1: RuntimeError: Connection closed by peer"
    assert done.command[:2] == [sys.executable, "-c"] and done.command.count("--output-dir") == 1
    summary = {"cpu": {"errors": {"plain": [], "lightning": []}, "retried": retried([done.to_dict()])}}
    text = "\n".join(report_mod.errors_section(summary))
    assert "## Launches started again" in text and "Connection closed by peer" in text and "Failed runs" not in text


@pytest.mark.parametrize("code, starts", [
    ("import sys; print('RuntimeError: Connection reset'); sys.exit(1)", 2),  # failed twice: a failure
    ("import sys; print('python -m plain_pytorch.train: error: --epochs 0 must be >= 1'); sys.exit(1)", 1),
    ("import time; time.sleep(30)", 1),  # a time-out: not paid twice
])
def test_a_ddp_launch_that_fails_for_good_is_a_failed_run(code, starts, tmp_path) -> None:
    record = RunRecord("plain", "variant", "ddp, 2 processes", "cpu", 0, 1, [sys.executable, "-c", code], processes=2)
    said = []
    done = run_once_more_if_ddp(record, tmp_path / "run", 2, None, lambda r, again="": said.append(r.ok))
    assert not done.ok and said == [False] * starts
    assert (done.retried_after is not None) == (starts == 2)
    summary = summarize_failed(done)
    text = "\n".join(report_mod.errors_section(summary))
    assert "## Failed runs" in text and "Launches started again" not in text
    assert ("started again after: exit 1: RuntimeError: Connection reset" in text) == (starts == 2)


def summarize_failed(record: RunRecord) -> dict:
    runs = [record.to_dict()]
    return {"cpu": {"errors": errors(runs), "retried": retried(runs)}}


# the tail of a real torchrun failure: the rank's error, then torchrun's own traceback and summary box
TORCHRUN_TAIL = """\
python -m plain_pytorch.train: error: --output-dir /x: another run (pid 7) is writing there
E1204 02:06:26.123000 15080 torch/distributed/elastic/multiprocessing/api.py:882] failed (exitcode: 1)
Traceback (most recent call last):
    raise ChildFailedError(
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
plain_pytorch.train FAILED
------------------------------------------------------------
  exitcode  : 1 (pid: 15088)
  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html
============================================================"""


def torchrun_box(rank: int, exitcode: str, traceback: str) -> str:
    """torchrun's failure summary, as it prints it, with its root-cause entry."""
    return ("torch.distributed.elastic.multiprocessing.errors.ChildFailedError:\n" + "=" * 60 + "\n"
            "x.py FAILED\n" + "-" * 60 + "\nFailures:\n  <NO_OTHER_FAILURES>\n" + "-" * 60 + "\n"
            "Root Cause (first observed failure):\n[0]:\n  time      : 2026-12-04_03:09:58\n"
            f"  rank      : {rank} (local_rank: {rank})\n  exitcode  : {exitcode} (pid: 22947)\n"
            f"  error_file: <N/A>\n  traceback : {traceback}\n" + "=" * 60)


# a rank killed by a signal: the survivor's transport error comes last, but it is a consequence
KILLED = ("[rank0]: RuntimeError: [gloo/transport/tcp/pair.cc:561] Connection closed by peer [127.0.0.1]:1234\n"
          + torchrun_box(1, "-9", "Signal 9 (SIGKILL) received by PID 22947"))
# the root-cause rank's own exception, then the other rank's
RAISED = ("[rank1]: ValueError: bad shard: rank 1 found 0 samples\n[rank0]: RuntimeError: Connection closed by peer\n"
          + torchrun_box(1, "1", "To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html"))


@pytest.mark.parametrize("tail, reason", [
    (TORCHRUN_TAIL, "python -m plain_pytorch.train: error: --output-dir /x: another run (pid 7) is writing there"),
    (KILLED, "rank 1: Signal 9 (SIGKILL) received by PID 22947"),
    (RAISED, "[rank1]: ValueError: bad shard: rank 1 found 0 samples"),
    # rank 1 exited 3 silently; rank 0's transport error is the consequence, not the cause
    ("[rank0]: RuntimeError: Connection closed by peer\n" + torchrun_box(1, "3", "To enable traceback see: x"),
     "rank 1: exit code 3, with no error line of its own"),
    ("RuntimeError: " + "x" * 400, "RuntimeError: " + "x" * 286),  # a long line keeps its start
    ("[rank1]:   File \"x.py\", line 3\n[rank1]: RuntimeError: Connection closed by peer\n=====",
     "[rank1]: RuntimeError: Connection closed by peer"),
    ("epoch 1\nKilled\n", "Killed"),
    ("", "(no output)"),
])
def test_a_failed_run_is_named_by_its_cause_not_torchruns_banner(tail, reason) -> None:
    assert failure_reason([line for line in tail.splitlines() if line.strip()]) == reason


def test_plan_alternates_sides_and_skips_foreign_variants() -> None:
    runs = plan(PROFILES["seed"], "cpu")
    e2e = [(r.round, r.side) for r in runs if r.kind == "end_to_end"]
    assert e2e[:4] == [(0, "plain"), (0, "lightning"), (1, "lightning"), (1, "plain")]
    assert {r.seed for r in runs if r.kind == "end_to_end"} == {42, 43, 44}
    variants = {r.label for r in runs if r.kind == "variant"}
    assert "batch 256" not in variants and "ddp, 2 processes" in variants
    ddp = [r for r in runs if r.label == "ddp, 2 processes"]
    assert {r.processes for r in ddp} == {2}
    assert any("torch.distributed.run" in r.command for r in ddp if r.side == "plain")


def fake_blocks(rounds: int = 6) -> dict:
    """Blocks where Lightning's step is 10 % slower (plus a little noise) and the A/A arm equals plain."""
    rng = np.random.default_rng(1)
    settings = {}
    for name, base in (("step", 0.05), ("fixed", 0.002)):
        blocks = []
        for r in range(rounds):
            for arm, factor in (("plain", 1.0), ("lightning", 1.1), ("plain A/A", 1.0)):
                t = base * factor * (1 + rng.normal(0, 0.001))
                blocks.append({"round": r, "arm": arm, "position": 0, "ok": True, "error": None,
                               "per_step": {"cpu": t, "wall": t, "steps": 40}, "block_wall_seconds": 3.0,
                               "block_cpu_seconds": 5.0, "final_weights_sha256": "w"})
        settings[name] = {"flags": ["--epochs", "2"], "arms": ["plain", "lightning", "plain A/A"], "blocks": blocks}
    return {"threads": 2, "settings": settings, "workers": {"plain": {"exit": 0, "cpu_seconds": 9.0}}}


def test_step_overhead_from_blocks(tmp_path) -> None:
    runs = [fake_run(side, r) for r in range(2) for side in ("plain", "lightning")]
    raw = fake_raw(runs)
    raw["accelerators"]["cpu"]["blocks"] = fake_blocks()
    summary = summarize(raw)
    h = summary["step_overhead"]["cpu"]
    assert h["ratio"] == pytest.approx(1.1, rel=0.01) and h["ratio_ci"][0] < 1.1 < h["ratio_ci"][1]
    assert h["n"] == 6 and h["confidence"] == 0.95 and h["aa_control_ci"][0] < 1.0 < h["aa_control_ci"][1]
    assert h["fixed_overhead_us"]["difference"] == pytest.approx(200, rel=0.05)
    assert summary["cpu"]["blocks"]["settings"]["step"]["final_weight_digests"] == {"": ["w"]}
    assert set(summary["mfu"]["cpu"]) >= {"peak_flops", "measured_ceiling_flops", "mfu_vs_peak"}
    text = (report_mod.write_report(raw, summary, tmp_path / "smoke") / "comparison.md").read_text()
    assert f"{h['ratio']:.3f}x (95% CI {h['ratio_ci'][0]:.3f}-{h['ratio_ci'][1]:.3f}" in text
    assert "5-10 minutes on CPU" not in text  # a seed-profile claim, not checked against the smoke profile
    raw["accelerators"]["cpu"]["blocks"]["settings"]["step"]["blocks"][1]["ok"] = False
    raw["accelerators"]["cpu"]["blocks"]["settings"]["step"]["blocks"][1]["error"] = "RuntimeError: boom"
    assert any("boom" in msg for msg in summarize(raw)["cpu"]["errors"]["lightning"])


@pytest.mark.parametrize("accelerator", ["cpu", "gpu"])
@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_planned_command_is_a_valid_configuration(name, accelerator, monkeypatch, tmp_path) -> None:
    """A typo in a variant's flags would otherwise surface only as a failed run, on a GPU hired by the minute."""
    from shared.cli import parse_config

    monkeypatch.setenv("WM811K_PATH", str(tmp_path / "LSWMD.pkl"))
    (tmp_path / "LSWMD.pkl").write_bytes(b"")
    runs = plan(PROFILES[name], accelerator)
    assert runs
    for run in runs:
        flags = run.command[run.command.index(f"{MODULES[run.side]}.train") + 1:]
        cfg = parse_config("check", "", [*flags, "--accelerator", "cpu"])  # parsing needs no GPU
        assert cfg.seed == run.seed


def test_warm_up_rounds_are_recorded_but_left_out() -> None:
    raw = fake_raw([fake_run(side, r) for r in range(2) for side in ("plain", "lightning")])
    blocks = fake_blocks(rounds=7)
    for setting in blocks["settings"].values():
        for b in setting["blocks"]:
            if b["round"] == 0 and b["arm"] == "lightning":  # a cold worker: 60x its steady step
                b["per_step"] = {**b["per_step"], "cpu": 60 * b["per_step"]["cpu"], "wall": 60 * b["per_step"]["wall"]}
    raw["accelerators"]["cpu"]["blocks"] = blocks
    assert summarize(raw)["step_overhead"]["cpu"]["ratio"] > 1.5  # counted, round 0 swamps the 10 %
    blocks["warmup_rounds"] = 1
    h = summarize(raw)["step_overhead"]["cpu"]
    assert h["ratio"] == pytest.approx(1.1, rel=0.01) and h["n"] == 6


@pytest.mark.parametrize(("loads", "busy"), [([2.4, 0.9, 1.0, 1.1, 1.0], False), ([2.4, 2.5, 2.6, 1.1, 2.7], True)])
def test_the_report_says_when_other_work_shared_the_machine(loads, busy) -> None:
    blocks = {"settings": {"step": {"blocks": [{"round": i, "loadavg_1min": x} for i, x in enumerate(loads)]}}}
    note = report_mod.load_note(blocks, cores=2)
    assert f"{min(loads):.1f}-{max(loads):.1f}" in note
    assert ("other work shared the machine" in note) == busy


def test_intervals_are_over_processes_where_the_rounds_ran_in_several() -> None:
    """A process's own speed persists over its rounds: with the rounds of 6 processes the interval is over the 6
    process means (its n), and wider than the per-round interval that would ignore them."""
    raw = fake_raw([fake_run(side, r) for r in range(2) for side in ("plain", "lightning")])
    blocks = fake_blocks(rounds=24)
    for setting in blocks["settings"].values():
        setting["generations"] = 6
        for b in setting["blocks"]:
            b["generation"] = b["round"] // 4
            if b["arm"] == "lightning":  # this process ran Lightning 4 % fast or slow, for all its rounds
                factor = 1.04 if b["generation"] % 2 else 1 / 1.04
                b["per_step"] = {**b["per_step"], "cpu": factor * b["per_step"]["cpu"]}
    raw["accelerators"]["cpu"]["blocks"] = blocks
    h = summarize(raw)["step_overhead"]["cpu"]
    assert (h["n"], h["unit"], h["rounds"]) == (6, "generation", 24)
    assert h["ratio"] == pytest.approx(1.1, rel=0.01) and h["ratio_ci"][0] < 1.1 < h["ratio_ci"][1]
    assert h["fixed_overhead_us"]["unit"] == "generation" and h["fixed_overhead_us"]["n"] == 6
    for setting in blocks["settings"].values():
        setting["generations"] = 1
        for b in setting["blocks"]:
            b["generation"] = 0
    naive = summarize(raw)["step_overhead"]["cpu"]
    assert (naive["n"], naive["unit"]) == (24, "round")
    assert naive["ratio_ci"][1] - naive["ratio_ci"][0] < (h["ratio_ci"][1] - h["ratio_ci"][0]) / 2


def test_a_setting_splits_its_rounds_evenly_over_its_processes() -> None:
    from benchmarks.blocks import RATIO_ARMS, Setting

    with pytest.raises(ValueError, match="10 rounds do not split into 3 generations"):
        Setting("step", (), RATIO_ARMS, 10, generations=3)


# a block of a few seconds: 72 maps of 8x8, a 1-channel CNN, one barebones epoch
BLOCK_FLAGS = ["--samples-per-class", "8", "--image-size", "8", "--base-channels", "1", "--batch-size", "9", "--epochs", "1",
               "--barebones", "--no-plots", "--seed", "3"]


@pytest.mark.slow
def test_blocks_run_both_sides_in_each_fresh_worker_process(tmp_path) -> None:
    """One worker per generation runs every arm; a bad block is recorded and its worker goes on."""
    from benchmarks.blocks import RATIO_ARMS, Arm, Setting, run_settings

    settings = [Setting("step", (), RATIO_ARMS, 2, generations=2),
                Setting("bad", (), (Arm("lightning", "lightning", ("--epochs", "0")),), 1)]
    out = run_settings(settings, BLOCK_FLAGS, 1, tmp_path, seed=1, timeout_s=120, say=lambda _: None, warmup_rounds=1,
                       prefetch=True,  # the second worker imports while the first measures; the results are the same
                       floors={"step": BLOCK_FLAGS})
    assert "error" not in out
    floors = out["floors"]["step"]  # each worker measured the step's floor after its blocks
    assert [f["generation"] for f in floors] == [0, 1] and all(f["ok"] and f["us_per_step"] > 0 for f in floors)
    assert sorted(out["workers"]) == ["g00", "g01"]
    assert all(w["exit"] == 0 and w["cpu_seconds"] > 0 for w in out["workers"].values())
    step = out["settings"]["step"]["blocks"]
    assert len(step) == 2 * (1 + 1) * 3 and all(b["ok"] for b in step)
    assert [(b["generation"], b["round"], b["warmup"]) for b in step[::3]] == [(0, 0, True), (0, 1, False),
                                                                              (1, 2, True), (1, 3, False)]
    assert len({b["final_weights_sha256"] for b in step}) == 1  # plain and Lightning, in one process: same weights
    bad = out["settings"]["bad"]["blocks"]
    assert [b["generation"] for b in bad] == [0, 0] and not bad[0]["ok"] and "epochs" in bad[0]["error"]


@pytest.mark.slow
def test_a_worker_killed_between_blocks_ends_only_its_generation(tmp_path, monkeypatch) -> None:
    from benchmarks import blocks as blocks_mod

    real_run, calls = blocks_mod.Worker.run, []

    def run(self, side, block_flags):
        calls.append(side)
        if len(calls) == 2:  # the first generation's worker dies after its first block
            self.proc.kill()
        return real_run(self, side, block_flags)

    monkeypatch.setattr(blocks_mod.Worker, "run", run)
    settings = [blocks_mod.Setting("step", (), blocks_mod.RATIO_ARMS, 2, generations=2)]
    out = blocks_mod.run_settings(settings, BLOCK_FLAGS, 1, tmp_path, seed=1, timeout_s=120, say=lambda _: None)
    assert out["error"].startswith("generation 0: RuntimeError: worker exited")
    assert out["workers"]["g00"]["exit"] == -9 and out["workers"]["g01"]["exit"] == 0
    step = out["settings"]["step"]["blocks"]
    assert [b["generation"] for b in step] == [0, 1, 1, 1] and all(b["ok"] for b in step)


def test_a_difference_of_fewer_than_five_units_is_shown_as_a_range_not_a_t_interval() -> None:
    ci = clustered_interval([100.0, 300.0, 200.0], None)
    assert formatting.fmt_interval(ci) == "+200 µs (range +100 to +300, n=3)"
    assert "±" in formatting.fmt_interval(clustered_interval([100.0, 300.0, 200.0, 250.0, 150.0], None))


def test_a_ratio_of_one_pair_is_not_shown() -> None:
    assert formatting.fmt_ratio({"ratio": 1.3, "n": 1, "range": [1.3, 1.3]}) == formatting.NO_RATIO
    assert formatting.fmt_ratio({"ratio": 1.3, "n": 2, "range": [1.2, 1.4]}) == "1.30x (range 1.20-1.40, n=2)"


def test_steady_state_leaves_the_warm_up_epochs_out() -> None:
    from benchmarks.blocks import per_step

    reply = {"steps_per_epoch": 10, "history": [{"train_seconds": 5.0, "train_cpu_seconds": 6.0},
                                                 {"train_seconds": 0.1, "train_cpu_seconds": 0.2},
                                                 {"train_seconds": 0.3, "train_cpu_seconds": 0.2}]}
    steady = per_step(reply, skip_epochs=1)
    assert steady["wall"] == pytest.approx(0.02) and steady["cpu"] == pytest.approx(0.02) and steady["steps"] == 20
    assert steady["warmup_seconds"] == 5.0
    assert per_step(reply)["wall"] == pytest.approx(5.4 / 30)
    with pytest.raises(ValueError, match="all of them skipped"):
        per_step(reply, skip_epochs=3)


def test_the_plan_states_its_expected_time_and_the_gpu_plan_fits_a_lease() -> None:
    """The GPU plan (checks included) is printed with its expected time, which fits the 6 minutes it is allowed of
    a 15-minute lease with its start-up (the report states the time the run took)."""
    from benchmarks.suite import describe_plan, expected_seconds

    gpu = expected_seconds(PROFILES["seed"], "gpu")
    assert set(gpu) >= {"imports", "fresh runs", "blocks", "GPU checks"} and sum(gpu.values()) <= 6 * 60
    text = describe_plan(PROFILES["seed"], "gpu")
    assert text.startswith("[gpu] plan: expected ") and "batch 256, data on device: 6 arms x 5 rounds in 5" in text
    assert "first 1 epoch(s) of each block left out" in text
    assert sum(expected_seconds(PROFILES["smoke"], "cpu").values()) < 5 * 60


def test_the_real_plan_expects_real_data_run_times(monkeypatch) -> None:
    """A real-data run trains ~8 minutes a side on the 2-core CPU: the plan says so, not the seed run's 20 s."""
    from benchmarks.suite import expected_seconds

    monkeypatch.setenv("WM811K_PATH", "unused-by-the-plan.pkl")
    assert expected_seconds(PROFILES["real"], "cpu")["fresh runs"] == 2 * PROFILES["real"].run_seconds >= 2 * 7 * 60


def test_every_gpu_block_figure_covers_at_least_200_steps_per_arm() -> None:
    """Steady state by construction: each setting's timed steps per arm (its rounds, over every process, times the
    timed epochs of a block, times the steps of an epoch of its training split), counted from the parsed flags."""
    import math

    from benchmarks.suite import block_flags, block_settings
    from shared.cli import parse_config

    profile = PROFILES["seed"]
    for s in block_settings(profile, "gpu"):
        cfg = parse_config("check", "", [*block_flags(profile, "gpu"), *s.flags, "--accelerator", "cpu"])
        train_maps = round(cfg.samples_per_class * 9 * (1 - cfg.val_fraction - cfg.test_fraction))
        steps = s.rounds * (cfg.epochs - s.skip_epochs) * math.ceil(train_maps / cfg.batch_size)
        assert steps >= 200, f"{s.name}: {steps} timed steps per arm"


def test_the_gpu_checks_run_as_their_own_pytest_and_report_their_summary() -> None:
    """Without CUDA every check skips; the runner still records the exit status, the time and pytest's last line."""
    from benchmarks.suite import run_gpu_checks

    checks = run_gpu_checks(timeout_s=120)
    assert checks["exit"] == 0 and checks["seconds"] > 0
    assert "skipped" in checks["summary"] and "test_gpu.py" in checks["log"]
    from benchmarks.report_cost import gpu_checks_section

    raw = {"accelerators": {"gpu": {"measured_seconds": 250.0, "gpu_checks": {**checks, "seconds": 62.0}}}}
    text = "\n".join(gpu_checks_section(raw))
    assert "in 62 s" in text and "The GPU plan took 5.2 min: 250 s of measurements" in text


@pytest.mark.parametrize("content", ["{bad", "[1]", '{"raw": {}}', "\udcff", '{"raw": null}', '{"accelerators": {}}',
                                     '{"raw": {"accelerators": 5}}'])
def test_rerendering_a_foreign_file_is_a_one_line_error_and_leaves_the_folder_alone(tmp_path, capsys, content) -> None:
    from benchmarks.report import main

    folder = tmp_path / "seed"
    folder.mkdir()
    (folder / "benchmark.json").write_bytes(content.encode("utf-8", "surrogateescape"))
    (folder / "comparison.md").write_text("kept")
    with pytest.raises(SystemExit) as exit_info:
        main([str(folder)])
    assert exit_info.value.code == 2
    assert "benchmark.json: not a benchmark record" in capsys.readouterr().err
    assert (folder / "comparison.md").read_text() == "kept" and sorted(p.name for p in tmp_path.iterdir()) == ["seed"]


def test_train_size_is_read_from_the_record_and_rebuilt_for_older_ones(monkeypatch) -> None:
    from benchmarks import summary as summary_mod

    monkeypatch.setattr(summary_mod, "_train_size", lambda items: 77)  # the re-split, stubbed
    config = dict.fromkeys(("data", "samples_per_class", "balance_classes", "image_size", "val_fraction",
                            "test_fraction", "seed"), 0)
    assert summary_mod.train_size({"train_size": 1234, "config": config}) == 1234
    assert summary_mod.train_size({"config": config}) == 77  # a record from before train_size


def test_quality_is_stated_with_its_bootstrap_interval_support_and_the_frontier(tmp_path) -> None:
    runs = [fake_run(side, r) for r in range(2) for side in ("plain", "lightning")]
    for i, run in enumerate(runs):
        run["metrics"]["test"]["f1_macro_bootstrap_95"] = [0.4 + i / 100, 0.6 + i / 100]
    raw = fake_raw(runs)
    summary = summarize(raw)
    assert summary["cpu"]["final_metrics"]["support"]["Scratch"] == 3
    text = "\n".join(report_mod.metrics_section(summary))
    assert "CPU plain PyTorch: seed 10 0.400-0.600; seed 11 0.420-0.620" in text
    assert "CPU Lightning: seed 10 0.410-0.610; seed 11 0.430-0.630" in text
    assert re.search(r"\| CPU +\| Scratch +\| 0\.320 +\| 0\.320 +\| 3 +\|", text)
    assert "frontier.md" not in text
    (tmp_path / "frontier.md").write_text("kept")
    assert "[frontier.md](frontier.md)" in "\n".join(report_mod.metrics_section(summary, tmp_path))
