"""The interleaved blocks' figures: arm pairs, the price list, the headline, the floor's shares."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats

from benchmarks.blocks import FEATURE_SWITCHES, SAME_WEIGHTS
from benchmarks.runner import SIDES
from benchmarks.stats import CONFIDENCE, clustered, clustered_interval, paired_ratio, spread, t_interval


def floor_shares(floors: dict | None, blocks: dict | None) -> dict:
    """Per measured setting: its floor (the device's own time per step), and each arm's time per step with the
    share of it that is host overhead (1 - floor / step time), in the primary clock."""
    out = {}
    if not floors or not blocks or "error" in floors:
        return out
    metric = blocks["primary"]
    for name, floor in floors.items():
        row = blocks["settings"].get(name)
        if row is None or not floor.get("us_per_step"):
            continue
        arms = {}
        for arm, stat in row["arms"][metric].items():
            if stat and arm != "plain A/A":
                samples_per_s = _flag_value(row["flags"], "--batch-size") / (stat["median"] * 1e-6)
                arms[arm] = {"us_per_step": stat["median"], "host_share": 1 - floor["us_per_step"] / stat["median"],
                             "samples_per_s": samples_per_s}
        out[name] = {"floor_us": floor["us_per_step"], "method": floor["method"], "arms": arms,
                     "floor_samples_per_s": _flag_value(row["flags"], "--batch-size") / (floor["us_per_step"] * 1e-6)}
    return out


def block_errors(blocks: dict | None) -> dict[str, list[str]]:
    """Failed blocks (and a worker failure) per side, so a missing arm shows up as a failed run."""
    out = {side: [] for side in SIDES}
    if blocks and blocks.get("error"):
        for side in SIDES:
            out[side].append(f"blocks: {blocks['error']}")
    for name, setting in (blocks or {}).get("settings", {}).items():
        for b in setting["blocks"]:
            if not b["ok"]:
                out[b["arm"].split()[0]].append(f"block {name}/{b['arm']} r{b['round']}: {b['error']}")
    return out


def _block_table(setting: dict, value: Callable[[dict], float]) -> dict[tuple[int, int], dict[str, float]]:
    """(generation, round) -> arm -> value(block) of the blocks that finished."""
    table = {}
    for b in setting["blocks"]:
        if b["ok"]:
            table.setdefault((b.get("generation", 0), b["round"]), {})[b["arm"]] = value(b)
    return table


def _per_step(metric: str) -> Callable[[dict], float]:
    """A block's seconds per step in metric 'cpu' or 'wall'."""
    return lambda b: b["per_step"][metric]


def _paired_blocks(setting: dict, table: dict, a: str, b: str) -> tuple[list[float], list[float], list[int] | None]:
    """a's and b's values in the rounds that have both, and each round's generation where the setting was planned
    over several processes (None otherwise: a setting planned over processes never falls back to rounds)."""
    keys = [k for k, v in table.items() if a in v and b in v]
    gens = [k[0] for k in keys] if setting.get("generations", 1) > 1 else None
    return [table[k][a] for k in keys], [table[k][b] for k in keys], gens


def block_comparison(setting: dict, metric: str, a: str, b: str) -> dict:
    """Arm a against arm b, paired by round: ratio a/b (t on logs) and difference a - b in µs per step (t), each
    over per-generation means when the setting ran on several worker processes."""
    num, den, gens = _paired_blocks(setting, _block_table(setting, _per_step(metric)), a, b)
    # the two arms' means over the same rounds (per process first, where several): beside the paired figures
    means = [float(np.mean(clustered([1e6 * v for v in values], gens)[0])) if values else None for values in (num, den)]
    return {"ratio": paired_ratio(num, den, gens), "means_us": means,
            "difference_us": clustered_interval([1e6 * (x - y) for x, y in zip(num, den)], gens)}


def block_arms(setting: dict, metric: str) -> dict[str, dict | None]:
    """µs per step of each arm (spread over its blocks)."""
    table = _block_table(setting, _per_step(metric))
    return {arm: spread([1e6 * v[arm] for v in table.values() if arm in v]) for arm in setting["arms"]}


def block_epoch_cost(setting: dict, a: str, b: str) -> dict | None:
    """Whole-block wall seconds per epoch, a - b, paired by round: what a feature costs outside the step loop too
    (validation logging, checkpoint files, early stopping), with a t-interval."""
    num, den, gens = _paired_blocks(setting, _block_table(setting, lambda blk: blk["block_wall_seconds"]), a, b)
    epochs = _flag_value(setting["flags"], "--epochs")
    return clustered_interval([(x - y) / epochs for x, y in zip(num, den)], gens)


def _flag_value(flags: list[str], flag: str) -> int:
    return int(flags[len(flags) - 1 - flags[::-1].index(flag) + 1])  # the last occurrence wins, as in argparse


def primary_metric(accelerator: str) -> str:
    """CPU time on the CPU (steadier on a shared machine); wall time on a GPU, where the CPU mostly waits."""
    return "cpu" if accelerator == "cpu" else "wall"


def summarize_blocks(blocks: dict | None, accelerator: str) -> dict | None:
    """The interleaved-block figures of one accelerator, in both metrics; `primary` names the headline one."""
    if not blocks:
        return None
    warmup = blocks.get("warmup_rounds", 0)
    out = {"primary": primary_metric(accelerator), "threads": blocks["threads"], "error": blocks.get("error"),
           "warmup_rounds": warmup, "settings": {}}
    for name, setting in blocks["settings"].items():
        # warm-up rounds: marked per generation; records written before generations existed: the first rounds
        setting = {**setting, "blocks": [b for b in setting["blocks"] if not b.get("warmup", b["round"] < warmup)]}
        arms = setting["arms"]
        row = {"flags": setting["flags"], "arms": {}, "comparisons": {},
               "generations": len({b.get("generation", 0) for b in setting["blocks"]}),
               "rounds": len({b["round"] for b in setting["blocks"]})}
        for metric in ("cpu", "wall"):
            row["arms"][metric] = block_arms(setting, metric)
            row["comparisons"][metric] = {f"{a} / {b}": block_comparison(setting, metric, a, b)
                                          for a, b in BLOCK_PAIRS if a in arms and b in arms}
        # same flags and seed: the final weights of every barebones arm must be one digest (and of both cosine arms)
        row["final_weight_digests"] = {group: weight_digests(setting, group_arms)
                                       for group, group_arms in SAME_WEIGHTS.items()
                                       if any(arm in arms for arm in group_arms)}
        row["epoch_cost_wall_s"] = {f"{a} - {b}": block_epoch_cost(setting, a, b)
                                    for a, b in BLOCK_PAIRS if a in arms and b in arms}
        if name == "fixed" and "lightning" in arms:
            row["robust_difference_us"] = robust_difference(setting, primary_metric(accelerator), "lightning", "plain")
        if name == "features":
            row["price_list"] = {metric: {side: price_list(setting, metric, side) for side in PRICE_SIDES}
                                 for metric in ("cpu", "wall")}
        if setting.get("skip_epochs"):  # the warm-up epochs (compilation, graph recording) of each block, alone
            row["warmup_seconds"] = {arm: spread([b["per_step"]["warmup_seconds"] for b in setting["blocks"]
                                                  if b["ok"] and b["arm"] == arm]) for arm in arms}
        out["settings"][name] = row
    return out


def feature_pairs(side: str) -> list[tuple[str, str]]:
    """(with, without) arm names of one side: every feature together, then each one alone, then the schedule.
    `side` is an arm prefix: "plain", "lightning" (matched) or "lightning defaults" (whose barebones is Lightning's)."""
    full, bare = (side, "lightning") if side == "lightning defaults" else (f"{side} full", side)
    pairs = [(full, bare), *((full, f"{side} without {name}" if side == "lightning defaults" else f"{full} without {name}")
                             for name in FEATURE_SWITCHES)]
    return pairs + ([] if side == "lightning defaults" else [(f"{side} cosine", side)])


PRICE_SIDES = ("plain", "lightning", "lightning defaults")
# (a, b) arm pairs compared wherever a setting has both: the framework (barebones, matched, defaults), the A/A
# control, the features, defaults against matched
BLOCK_PAIRS = [("lightning", "plain"), ("plain A/A", "plain"), ("lightning full", "plain full"),
               ("lightning defaults", "plain full"), ("lightning defaults", "lightning full"),
               *(pair for side in PRICE_SIDES for pair in feature_pairs(side)), ("lightning cosine", "plain cosine")]


def price_list(setting: dict, metric: str, side: str) -> dict | None:
    """One side's per-step price list: each feature (full - full without it), the residual the named features do
    not explain ((full - barebones) - their sum, per round) and the total; each a t-interval over the rounds
    (per generation where several), paired by round, so the rows add up to the total round by round."""
    table = _block_table(setting, _per_step(metric))
    (full, bare), *features = feature_pairs(side)[:1 + len(FEATURE_SWITCHES)]
    arms = [full, bare, *(without for _, without in features)]
    keys = [k for k, v in table.items() if all(a in v for a in arms)]
    if not keys:
        return None
    gens = [k[0] for k in keys] if setting.get("generations", 1) > 1 else None
    us = {k: {a: 1e6 * table[k][a] for a in arms} for k in keys}
    rows = {name: [us[k][full] - us[k][without] for k in keys]
            for name, (_, without) in zip(FEATURE_SWITCHES, features)}
    total = [us[k][full] - us[k][bare] for k in keys]
    residual = [t - sum(rows[name][i] for name in rows) for i, t in enumerate(total)]
    out = {name: clustered_interval(values, gens) for name, values in rows.items()}
    out["residual"] = clustered_interval(residual, gens)
    out["total"] = clustered_interval(total, gens)
    return out


def weight_digests(setting: dict, arms: tuple[str, ...]) -> list[str]:
    """The distinct final-weight digests of the given arms' blocks ("(missing)" for a block that has none)."""
    digests = {b.get("final_weights_sha256") for b in setting["blocks"] if b["ok"] and b["arm"] in arms}
    return sorted(d for d in digests if d) + (["(missing)"] if None in digests or "" in digests else [])


def step_overhead(blocks: dict | None) -> dict | None:
    """The headline: Lightning/plain per step barebones (with its A/A control), matched and defaults (full against
    plain full), and the fixed cost in µs per step."""
    if not blocks or "step" not in blocks["settings"]:
        return None
    metric = blocks["primary"]
    main = blocks["settings"]["step"]["comparisons"][metric]
    ratio, aa = main["lightning / plain"]["ratio"], main["plain A/A / plain"]["ratio"]
    if not ratio or not ratio["ci95"]:
        return None
    out = {"metric": metric, "ratio": ratio["ratio"], "ratio_ci": ratio["ci95"], "confidence": CONFIDENCE,
           "n": ratio["n"], "unit": ratio["unit"], "rounds": ratio["rounds"],
           "method": ("Student t over per-generation means of per-round log ratios (n worker processes)"
                      if ratio["unit"] == "generation" else "Student t on per-round log ratios (one worker process)"),
           "aa_control": aa["ratio"] if aa else None, "aa_control_ci": aa["ci95"] if aa else None,
           "arms": {arm: _headline_ratio(main.get(key)) for arm, key in HEADLINE_ARMS.items()}}
    fixed = blocks["settings"].get("fixed")
    if fixed:
        arms, diff = fixed["arms"][metric], fixed["comparisons"][metric]["lightning / plain"]["difference_us"]
        aa_diff = fixed["comparisons"][metric]["plain A/A / plain"]["difference_us"]
        if diff:
            out["fixed_overhead_us"] = {
                "plain": arms["plain"]["median"], "lightning": arms["lightning"]["median"],
                "difference": diff["mean"], "difference_ci": [diff["low"], diff["high"]], "n": diff["n"],
                "unit": diff["unit"], "rounds": diff["rounds"],
                "aa_difference_ci": [aa_diff["low"], aa_diff["high"]] if aa_diff else None,
                "robust": fixed.get("robust_difference_us"), "flags": fixed["flags"]}
    return out


# the headline's arms: which comparison of the `step` setting each one is
# (name, compared arm, reference arm): what the headline states, and the report's cost table besides the A/A
ARM_PAIRS = (("barebones", "lightning", "plain"), ("matched", "lightning full", "plain full"),
             ("defaults", "lightning defaults", "plain full"), ("defaults over matched", "lightning defaults", "lightning full"))
HEADLINE_ARMS = {name: f"{a} / {b}" for name, a, b in ARM_PAIRS}


def _headline_ratio(comparison: dict | None) -> dict | None:
    """A comparison's ratio and µs difference, as the headline states them."""
    if not comparison or not comparison.get("ratio"):
        return None
    r = comparison["ratio"]
    return {"ratio": r["ratio"], "ci95": r["ci95"], "range": r["range"], "n": r["n"], "unit": r["unit"],
            "difference_us": comparison.get("difference_us")}


def robust_difference(setting: dict, metric: str, a: str, b: str, trim: float = 0.2) -> dict | None:
    """a - b in µs per step as a 20 % trimmed mean of the rounds within each process, then a t-interval over the
    processes: a figure that one descheduled block cannot move."""
    num, den, gens = _paired_blocks(setting, _block_table(setting, _per_step(metric)), a, b)
    diffs = [1e6 * (x - y) for x, y in zip(num, den)]
    if gens is None:
        return None
    units, _ = clustered(diffs, gens, aggregate=lambda v: stats.trim_mean(v, trim))
    ci = t_interval(units)
    return {**ci, "unit": "generation", "trim": trim, "rounds": len(diffs)} if ci else None
