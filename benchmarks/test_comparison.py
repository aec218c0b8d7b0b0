"""Checks on the comparison: every run worked, the two sides did the same work, the figures hold what they claim."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks.conftest import Suite
from benchmarks.runner import SIDES
from benchmarks.summary import per_accelerator

# the profile whose per-step figures the report states as resolved (real runs no blocks; smoke only exercises
# the code)
RESOLVED = ("seed",)


def _accs(suite: Suite) -> dict:
    return per_accelerator(suite.summary)


def _with_blocks(suite: Suite) -> dict:
    """The accelerators whose plan ran interleaved blocks (the real profile runs none)."""
    return {acc: s for acc, s in _accs(suite).items() if suite.profile.blocks_for(acc) is not None}


@pytest.mark.parametrize("side", SIDES)
def test_every_run_succeeded(suite: Suite, side: str) -> None:
    failures = [msg for acc in _accs(suite).values() for msg in acc["errors"][side]]
    assert not failures, f"{side}: {len(failures)} failed runs or blocks:\n" + "\n".join(failures)


@pytest.mark.parametrize("side", SIDES)
def test_side_learns(suite: Suite, side: str) -> None:
    """Above chance (1/9) by a clear margin on the profiles that train long enough to learn."""
    if suite.profile.name == "smoke":
        pytest.skip("the smoke profile trains 2 epochs on 108 maps: too little to expect learning")
    for acc, s in _accs(suite).items():
        acc_mean = s["final_metrics"]["accuracy"][side]["mean"]
        assert acc_mean > 0.4, f"{acc}: {side} test accuracy {acc_mean:.3f}"


def test_parity_of_every_pair(suite: Suite) -> None:
    """Same initial weights and digests recorded; on the CPU also the same number of steps and final weights."""
    for acc, s in _accs(suite).items():
        rows = s["parity"]
        assert rows, f"{acc}: no round in which both sides finished"
        for p in rows:
            assert p["digests_present"], p
            assert p["initial_weights_identical"], p
            if acc == "cpu":  # GPU kernels need not be bitwise reproducible
                assert p["step_losses"]["plain"] == p["step_losses"]["lightning"] > 0, p
                assert p["final_weights_identical"], p


def test_step_losses_match_on_cpu(suite: Suite) -> None:
    """Same weights, batches and dropout masks: per-step losses agree to 1e-6 over the first epoch."""
    if "cpu" not in suite.summary:
        pytest.skip("parity is checked on the CPU (GPU kernels need not be bitwise reproducible)")
    rows = suite.summary["cpu"]["parity"]
    assert rows
    worst = max(p["max_step_loss_diff_epoch0"] for p in rows)
    assert worst <= 1e-6, f"largest first-epoch step-loss difference {worst:.3e}"


def test_blocks_train_the_same_weights_on_cpu(suite: Suite) -> None:
    """Every block of a setting but the cosine ones trains the same weights (same flags and seed; the features
    change no arithmetic): one final-weight digest across those arms, and one across the two cosine arms."""
    if suite.profile.blocks is None:
        pytest.skip(f"the {suite.profile.name} profile runs no interleaved blocks")
    if "cpu" not in suite.summary:
        pytest.skip("checked on the CPU (autotuned GPU kernels need not be bitwise reproducible)")
    blocks = suite.summary["cpu"].get("blocks")
    assert blocks, "no interleaved blocks on the CPU"
    for name, row in blocks["settings"].items():
        assert row["final_weight_digests"], f"{name}: no digests"
        for group, digests in row["final_weight_digests"].items():
            assert len(digests) == 1, f"{name} {group or 'barebones'}: {digests}"


def test_final_metrics_agree(suite: Suite) -> None:
    """The framework must not change what is learned: the side gap stays within seed-to-seed noise."""
    for acc, s in _accs(suite).items():
        row = s["final_metrics"]["accuracy"]
        assert "gap" in row, f"{acc}: a side has no test accuracy: {row}"
        if row["gap_in_seed_std"] is None:
            assert abs(row["gap"]) <= 0.05, f"{acc}: accuracy gap {row}"
        else:
            assert abs(row["gap_in_seed_std"]) <= 2.0, f"{acc}: accuracy gap {row}"


def test_step_overhead_measured(suite: Suite) -> None:
    """The headline exists for every accelerator, with an interval around its ratio and an A/A control."""
    if suite.profile.blocks is None:
        pytest.skip(f"the {suite.profile.name} profile runs no interleaved blocks")
    for acc in _accs(suite):
        h = suite.summary["step_overhead"].get(acc)
        assert h, f"{acc}: per-step overhead not measured"
        assert h["confidence"] == 0.95 and h["n"] >= 5, f"{acc}: an interval over {h['n']} units"
        assert h["aa_control_ci"], f"{acc}: no A/A control"
        for arm in ("barebones", "matched", "defaults"):
            assert h["arms"][arm] and h["arms"][arm]["ratio"] > 0, f"{acc}: {arm} arm not measured"
        if suite.profile.blocks_for(acc).fixed:
            fixed = h.get("fixed_overhead_us")
            assert fixed, f"{acc}: fixed overhead (near-zero-cost step) not measured"


def test_headline_recomputed_from_the_raw_blocks(suite: Suite) -> None:
    """The barebones and matched ratios of the step setting, recomputed from the raw block records alone (per
    round a ratio; per process the mean log ratio; the geometric mean over processes), equal the headline's."""
    for acc, h in suite.summary["step_overhead"].items():
        setting = suite.raw["accelerators"][acc]["blocks"]["settings"]["step"]
        metric = h["metric"]
        for arm, (a, b) in (("barebones", ("lightning", "plain")), ("matched", ("lightning full", "plain full")),
                            ("defaults", ("lightning defaults", "plain full"))):
            rounds = {}
            for blk in setting["blocks"]:
                if blk["ok"] and not blk["warmup"]:
                    rounds.setdefault((blk["generation"], blk["round"]), {})[blk["arm"]] = blk["per_step"][metric]
            per_process = {}
            for (gen, _), r in rounds.items():
                if a in r and b in r:
                    per_process.setdefault(gen, []).append(math.log(r[a] / r[b]))
            units = [sum(v) / len(v) for v in per_process.values()] if setting["generations"] > 1 else \
                [x for v in per_process.values() for x in v]
            assert h["arms"][arm]["ratio"] == pytest.approx(math.exp(sum(units) / len(units)), rel=1e-9), (acc, arm)


def test_price_list_adds_up_from_the_raw_blocks(suite: Suite) -> None:
    """Recomputed from the raw block records: each side's feature rows plus the residual give its total, and the
    total is the mean paired difference full - barebones."""
    if not _with_blocks(suite):
        pytest.skip(f"the {suite.profile.name} profile runs no interleaved blocks")
    for acc, s in _with_blocks(suite).items():
        if not suite.profile.blocks_for(acc).features:
            continue
        setting = suite.raw["accelerators"][acc]["blocks"]["settings"]["features"]
        metric = s["blocks"]["primary"]
        prices = s["blocks"]["settings"]["features"]["price_list"][metric]
        for side, (full, bare) in (("plain", ("plain full", "plain")), ("lightning", ("lightning full", "lightning")),
                                   ("lightning defaults", ("lightning defaults", "lightning"))):
            rounds = {}
            for b in setting["blocks"]:
                if b["ok"] and not b["warmup"]:
                    rounds.setdefault(b["round"], {})[b["arm"]] = 1e6 * b["per_step"][metric]
            total = [r[full] - r[bare] for r in rounds.values() if full in r and bare in r]
            p = prices[side]
            assert p["total"]["mean"] == pytest.approx(sum(total) / len(total), rel=1e-9, abs=1e-6), (acc, side)
            parts = sum(p[name]["mean"] for name in p if name != "total")
            assert parts == pytest.approx(p["total"]["mean"], rel=1e-9, abs=1e-6), (acc, side)


def test_every_step_setting_has_its_floor(suite: Suite) -> None:
    """The device's own time per step is measured for each step setting, below every arm's step time."""
    if not _with_blocks(suite):
        pytest.skip(f"the {suite.profile.name} profile runs no interleaved blocks")
    for acc, s in _with_blocks(suite).items():
        floors = s["floors"]
        assert "step" in floors, f"{acc}: no floor for the step setting ({suite.raw['accelerators'][acc].get('floors')})"
        for name, f in floors.items():
            assert f["floor_us"] > 0 and f["arms"], (acc, name)


def test_step_overhead_resolved(suite: Suite) -> None:
    """Where the report states results: the barebones ratio resolved, A/A containing 1.00, fixed cost resolved (CPU).

    Resolved means within the precision this design reaches, not a target a rerun can chase: the 60-round,
    12-process design gave half-widths of 1.7, 2.0 and 2.4 % on this VM (`precision.json` beside the report keeps
    every run's), so a half-width over 3.5 % means the protocol broke (a process effect, a noisy neighbour), not bad
    luck. A correct 95 % interval misses 1.00 in one A/A run out of twenty. The fixed cost is held to ±50 % of
    itself (±10 µs would take ~10,000 rounds here; four runs gave ±14 to ±36 % of itself): it excludes 0 and fixes
    X/T to within 2x.
    """
    if suite.profile.name not in RESOLVED:
        pytest.skip(f"the {suite.profile.name} profile is too small to resolve the overhead")
    if "cpu" not in suite.summary:
        pytest.skip("the ±2 % design is the CPU's (60 rounds in 12 processes); a GPU lease holds 5 processes")
    h = suite.summary["step_overhead"]["cpu"]
    low, high = h["ratio_ci"]
    assert (high - low) / 2 / h["ratio"] <= 0.035, f"ratio {h['ratio']:.3f} ({low:.3f}-{high:.3f}): over ±3.5 %"
    a, b = h["aa_control_ci"]
    assert a <= 1.0 <= b, f"A/A control {a:.3f}-{b:.3f} excludes 1.00: the protocol is biased (or a 1-in-20 miss)"
    fixed = h["fixed_overhead_us"]
    lo, hi = fixed["difference_ci"]
    assert (hi - lo) / 2 <= 0.5 * abs(fixed["difference"]), (
        f"fixed overhead {fixed['difference']:.0f} µs ({lo:.0f}-{hi:.0f}) is not resolved to ±50 % of itself")


def test_mfu_within_ceiling(suite: Suite) -> None:
    """Achieved FLOP/s can exceed neither the device's peak nor the measured matmul ceiling. (That the matmul stays
    below the CPU's peak is not checked: cpu_peak raises its assumed clock to fit the matmul, so it always would.)"""
    for acc, s in _accs(suite).items():
        m = s["mfu"]
        assert m["sides"], f"{acc}: MFU not measured"
        assert m["measured_ceiling_flops"], f"{acc}: matmul ceiling not measured"
        for side, v in m["sides"].items():
            assert v["achieved_flops_per_s"] <= m["measured_ceiling_flops"], (acc, side, v, m)
            if m["peak_flops"]:
                assert v["achieved_flops_per_s"] <= m["peak_flops"], (acc, side, v, m)
        if m["peak_flops"] and acc == "gpu":  # a datasheet figure, independent of the measurement
            assert m["measured_ceiling_flops"] <= m["peak_flops"], f"{acc}: the measured matmul beats the peak: {m}"


def test_report_states_the_figures(suite: Suite) -> None:
    """The markdown carries the measured numbers (not just its headings), the JSON the raw records."""
    text = (suite.report_dir / "comparison.md").read_text()
    for acc, h in suite.summary["step_overhead"].items():
        assert f"{h['ratio']:.3f}x (95% CI {h['ratio_ci'][0]:.3f}-{h['ratio_ci'][1]:.3f}" in text, acc
        if suite.profile.blocks_for(acc).fixed:
            assert f"**+{h['fixed_overhead_us']['difference']:.0f} µs per step**" in text, acc
    for acc, s in _accs(suite).items():
        for side in SIDES:
            v = s["mfu"]["sides"][side]
            if v["mfu_vs_peak"] is not None:  # None only for a card without a datasheet entry
                assert f"{100 * v['mfu_vs_peak']:.1f} %" in text, (acc, side)
        wall = s["runtime"]["wall_seconds"]["sides"]
        assert all(wall[side] for side in SIDES), f"{acc}: end-to-end wall time missing"
    rounds = suite.profile.rounds_for(next(iter(_accs(suite))))
    assert f"{rounds} round(s) per side" in text
    if rounds < 5:
        assert "95% CI" not in text.split("## Runtime")[1].split("## ")[0], "a CI claimed from fewer than 5 rounds"
    assert ("5-10 minutes on CPU" in text) == (suite.profile.name == "seed"), "a claim row outside its setting"
    for name in ("runtime.png", "overhead_vs_step_time.png", "loss_curves.png", "confusion_matrices.png",
                 "step_loss_diff.png"):
        assert (suite.report_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    data = json.loads((suite.report_dir / "benchmark.json").read_text())
    assert set(data) == {"raw", "summary"}
    for acc, entry in data["raw"]["accelerators"].items():
        for run in entry["runs"]:
            assert run["cpu_seconds"] and math.isfinite(run["cpu_seconds"]), (acc, run["label"], run["side"])
        if suite.profile.blocks is not None:
            assert all(w["cpu_seconds"] > 0 for w in entry["blocks"]["workers"].values()), acc
