"""Turn the raw run records into the figures of the report: medians, spreads, ratios, parity."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
from scipy import stats

from benchmarks.blocks import FEATURE_SWITCHES, SAME_WEIGHTS
from benchmarks.runner import SIDES
from shared.config import TrainConfig


def spread(values: list[float]) -> dict | None:
    """Median, interquartile range, min, max and n of a sample (None when empty)."""
    if not values:
        return None
    v = np.asarray(values, dtype=float)
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return {"median": float(med), "q1": float(q1), "q3": float(q3), "min": float(v.min()), "max": float(v.max()),
            "n": len(v)}


MIN_CI_N = 5  # below this an interval is reported as the range of the values, not as a CI
CONFIDENCE = 0.95


def t_interval(values: list[float], confidence: float = CONFIDENCE) -> dict | None:
    """Mean with a Student-t interval (exact for normal data, close for n >= 20 otherwise); None under 2 values."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return None
    mean, sem = float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v)))
    half = float(stats.t.ppf(0.5 + confidence / 2, len(v) - 1) * sem)
    return {"mean": mean, "low": mean - half, "high": mean + half, "half_width": half, "n": len(v),
            "confidence": confidence}


def clustered(values: list[float], clusters: list | None) -> tuple[list[float], str]:
    """The units an interval is taken over: with values from several worker processes (generations), one mean
    per process, so whatever differs between processes is inside the interval; else the values themselves."""
    if clusters is None:
        return list(values), "round"
    groups = {}
    for value, cluster in zip(values, clusters):
        groups.setdefault(cluster, []).append(value)
    return [float(np.mean(g)) for g in groups.values()], "generation"


def paired_ratio(numerators: list[float], denominators: list[float], clusters: list | None = None) -> dict | None:
    """Geometric mean of per-round ratios; a t-interval on their logs (per generation, see `clustered`) from
    MIN_CI_N units on, else the range of the units' ratios."""
    kept = [(a / b, c) for a, b, c in zip(numerators, denominators, clusters or [None] * len(numerators)) if a and b]
    if not kept:
        return None
    ratios = [r for r, _ in kept]
    units, unit = clustered(list(np.log(ratios)), [c for _, c in kept] if clusters is not None else None)
    out = {"ratio": float(np.exp(np.mean(units))), "median": float(np.median(ratios)), "n": len(units), "unit": unit,
           "rounds": len(ratios), "ci95": None,
           "range": [float(min(ratios)), float(max(ratios))] if unit == "round" else
                    [float(np.exp(min(units))), float(np.exp(max(units)))]}
    if len(units) >= MIN_CI_N:
        ci = t_interval(units)
        out["ci95"] = [float(np.exp(ci["low"])), float(np.exp(ci["high"]))]
    return out


def clustered_interval(values: list[float], clusters: list | None) -> dict | None:
    """A t-interval over the units of `clustered` (per generation where there are several)."""
    units, unit = clustered(values, clusters)
    ci = t_interval(units)
    return {**ci, "unit": unit, "rounds": len(values), "range": [min(units), max(units)]} if ci else None


@lru_cache(maxsize=8)
def _train_size(config_items: tuple) -> int:
    from shared.data import split_dataset

    return len(split_dataset(TrainConfig(**dict(config_items))).train)


def train_size(config: dict) -> int:
    """Training maps per epoch of a run (rebuilt from its recorded config; data only, no training)."""
    keep = ("data", "samples_per_class", "balance_classes", "image_size", "val_fraction", "test_fraction", "seed")
    return _train_size(tuple((k, config[k]) for k in keep))


def steady_step_seconds(metrics: dict) -> float | None:
    """Median seconds per training step over epochs after the first (warm-up: allocator, caches, autotune)."""
    history, steps = metrics.get("history") or [], metrics.get("steps_per_epoch") or 0
    epochs = [h["train_seconds"] for h in history[1:] if h.get("train_seconds")]
    return float(np.median(epochs)) / steps if epochs and steps else None


def samples_per_second(metrics: dict) -> float | None:
    step = steady_step_seconds(metrics)
    if not step:
        return None
    # under DDP each rank steps through its shard: one epoch still covers the whole training set
    return train_size(metrics["config"]) / (step * metrics["steps_per_epoch"])


def run_figures(run: dict) -> dict:
    """Per-run figures: wall time, time to first step, steady step time, samples/s, memory."""
    m = run.get("metrics") or {}
    first, step = m.get("first_step_unix"), steady_step_seconds(m) if m else None
    return {
        "wall_seconds": run.get("wall_seconds") if run.get("ok") else None,
        "first_step_seconds": first - run["launch_unix"] if run.get("ok") and first else None,
        "step_ms": step * 1e3 if step else None,
        "samples_per_s": samples_per_second(m) if m else None,
        "max_rss_mib": run["max_rss_bytes"] / 2**20 if run.get("max_rss_bytes") and run.get("processes", 1) == 1 else None,
        "cuda_peak_mib": m["peak_cuda_memory_bytes"] / 2**20 if m.get("peak_cuda_memory_bytes") else None,
        "fit_seconds": m.get("fit_seconds"),
        "epochs_run": m.get("epochs_run"),
    }


def _select(runs: list[dict], kind: str, label: str | None = None) -> list[dict]:
    return [r for r in runs if r["kind"] == kind and (label is None or r["label"] == label)]


def _by_side(runs: list[dict], figure: str) -> dict[str, list[float]]:
    out = {side: [] for side in SIDES}
    for r in runs:
        value = run_figures(r)[figure]
        if value is not None:
            out[r["side"]].append(value)
    return out


def _paired(runs: list[dict], figure: str, key: str = "side", over: tuple[str, str] = ("lightning", "plain")) -> dict | None:
    """Ratio over[0]/over[1] of a figure (by default Lightning/plain), paired within the rounds that have both."""
    rounds = {}
    for r in runs:
        rounds.setdefault(r["round"], {})[r[key]] = run_figures(r)[figure]
    pairs = [(v[over[0]], v[over[1]]) for v in rounds.values() if v.get(over[0]) and v.get(over[1])]
    return paired_ratio([a for a, _ in pairs], [b for _, b in pairs])


def errors(runs: list[dict]) -> dict[str, list[str]]:
    """Failures per side, with their messages."""
    out = {side: [] for side in SIDES}
    for r in runs:
        if not r["ok"]:
            again = f" (started again after: {r['retried_after']})" if r.get("retried_after") else ""
            out[r["side"]].append(f"{r['kind']}/{r['label']} r{r['round']}: {r['error']}{again}")
    return out


def retried(runs: list[dict]) -> list[str]:
    """DDP launches that failed once and succeeded when started again, with the first attempt's error."""
    return [f"{r['side']} {r['kind']}/{r['label']} r{r['round']}: {r['retried_after']}"
            for r in runs if r.get("retried_after") and r["ok"]]


def summarize_accelerator(entry: dict, accelerator: str) -> dict:
    """Every table's numbers for one accelerator."""
    runs = entry["runs"]
    e2e = _select(runs, "end_to_end")
    figures = ("wall_seconds", "first_step_seconds", "step_ms", "samples_per_s", "max_rss_mib", "cuda_peak_mib")
    runtime = {f: {"sides": {s: spread(v) for s, v in _by_side(e2e, f).items()}, "ratio": _paired(e2e, f)}
               for f in figures}
    imports = entry["imports"]
    runtime["import_seconds"] = {"sides": {s: spread(imports[s]) for s in SIDES},
                                 "ratio": paired_ratio(imports["lightning"], imports["plain"])}
    blocks = summarize_blocks(entry.get("blocks"), accelerator)
    variants = {}
    for label in dict.fromkeys(r["label"] for r in _select(runs, "variant")):  # in plan order
        chosen = _select(runs, "variant", label)
        variants[label] = {"step_ms": {s: spread(v) for s, v in _by_side(chosen, "step_ms").items()},
                           "samples_per_s": {s: spread(v) for s, v in _by_side(chosen, "samples_per_s").items()},
                           "ratio": _paired(chosen, "step_ms")}
    failed = {side: msgs + block_errors(entry.get("blocks"))[side] for side, msgs in errors(runs).items()}
    return {"runtime": runtime, "blocks": blocks, "floors": floor_shares(entry.get("floors"), blocks),
            "variants": variants, "final_metrics": final_metrics(e2e),
            "parity": parity(e2e), "mfu": mfu(runtime, entry), "retried": retried(runs), "errors": failed}


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


def final_metrics(runs: list[dict]) -> dict:
    """Test metrics per side over the seeds of the timed rounds: mean, std, and the gap in seed-std units."""
    out = {}
    for key in ("accuracy", "precision_macro", "recall_macro", "f1_macro"):
        per_side = {s: [r["metrics"]["test"][key] for r in runs if r["ok"] and r["side"] == s] for s in SIDES}
        row = {s: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else None, "n": len(v)}
               if v else None for s, v in per_side.items()}
        if all(row.values()):
            pooled = np.sqrt(np.mean([row[s]["std"] ** 2 for s in SIDES])) if all(row[s]["std"] for s in SIDES) else None
            gap = row["lightning"]["mean"] - row["plain"]["mean"]
            row["gap"] = gap
            row["gap_in_seed_std"] = gap / pooled if pooled else None
        out[key] = row
    out["per_class_f1"] = {s: _per_class_f1([r for r in runs if r["ok"] and r["side"] == s]) for s in SIDES}
    return out


def _per_class_f1(runs: list[dict]) -> dict[str, float]:
    """Mean F1 per class over the runs (what imbalanced real data needs to be judged by)."""
    if not runs:
        return {}
    names = runs[0]["metrics"]["test"]["per_class"]
    return {name: float(np.mean([r["metrics"]["test"]["per_class"][name]["f1"] for r in runs])) for name in names}


def parity(runs: list[dict]) -> list[dict]:
    """Per seed: identical initial weights, largest first-epoch step-loss difference, identical final weights."""
    rows = []
    by_seed = {}
    for r in runs:
        if r["ok"]:
            by_seed.setdefault(r["seed"], {})[r["side"]] = r["metrics"]
    for seed, sides in sorted(by_seed.items()):
        if set(sides) != set(SIDES):
            continue
        p, lt = sides["plain"], sides["lightning"]
        steps = p["steps_per_epoch"]
        a, b = np.asarray(p["step_losses"][:steps], float), np.asarray(lt["step_losses"][:steps], float)
        n = min(len(a), len(b))
        all_a, all_b = np.asarray(p["step_losses"], float), np.asarray(lt["step_losses"], float)
        m = min(len(all_a), len(all_b))
        rows.append({
            "seed": seed,
            "initial_weights_identical": p["initial_weights_sha256"] == lt["initial_weights_sha256"],
            "max_step_loss_diff_epoch0": float(np.max(np.abs(a[:n] - b[:n]))) if n else None,
            "max_step_loss_diff_all": float(np.max(np.abs(all_a[:m] - all_b[:m]))) if m else None,
            "steps_compared": n,
            "step_losses": {"plain": len(all_a), "lightning": len(all_b)},
            "epochs_run": {"plain": p["epochs_run"], "lightning": lt["epochs_run"]},
            "digests_present": all(m.get(k) for m in (p, lt) for k in ("initial_weights_sha256", "final_weights_sha256")),
            "final_weights_identical": p["final_weights_sha256"] == lt["final_weights_sha256"],
        })
    return rows


def mfu(runtime: dict, entry: dict) -> dict:
    """Model FLOP utilisation: training FLOPs/sample x steady samples/s over the device's peak (the usual MFU)
    and over the best measured fp32 matmul (before or after the runs, whichever was faster)."""
    peak = (entry.get("peak") or {}).get("fp32")
    ceilings = [c["flops_per_s"] for c in (entry.get("ceiling_before"), entry.get("ceiling_after"), entry.get("ceiling"))
                if c and c.get("flops_per_s")]
    ceiling = max(ceilings) if ceilings else None
    per_sample = entry.get("flops_per_sample")
    out = {"flops_per_sample": per_sample, "peak_flops": peak, "measured_ceiling_flops": ceiling,
           "ceiling_drift": (ceilings[1] / ceilings[0]) if len(ceilings) == 2 else None, "sides": {}}
    for side in SIDES:
        sps = runtime["samples_per_s"]["sides"][side]
        if sps and per_sample:
            achieved = per_sample * sps["median"]
            out["sides"][side] = {"achieved_flops_per_s": achieved,
                                  "mfu_vs_peak": achieved / peak if peak else None,
                                  "fraction_of_ceiling": achieved / ceiling if ceiling else None}
    return out


def summarize(raw: dict) -> dict:
    """Per accelerator ("cpu", "gpu") every table's numbers; plus the headline figures keyed by accelerator."""
    out = {acc: summarize_accelerator(entry, acc) for acc, entry in raw["accelerators"].items()}
    overhead = {acc: step_overhead(out[acc]["blocks"]) for acc in raw["accelerators"]}
    out["step_overhead"] = {acc: v for acc, v in overhead.items() if v}
    out["mfu"] = {acc: {"peak_flops": out[acc]["mfu"]["peak_flops"],
                        "measured_ceiling_flops": out[acc]["mfu"]["measured_ceiling_flops"],
                        "mfu_vs_peak": {side: v["mfu_vs_peak"] for side, v in out[acc]["mfu"]["sides"].items()},
                        "fraction_of_ceiling": {side: v["fraction_of_ceiling"] for side, v in out[acc]["mfu"]["sides"].items()}}
                  for acc in raw["accelerators"]}
    return out


ACCELERATORS = ("cpu", "gpu")


def per_accelerator(summary: dict) -> dict:
    """The per-accelerator entries of a summary (without the headline keys)."""
    return {acc: summary[acc] for acc in ACCELERATORS if acc in summary}


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
HEADLINE_ARMS = {"barebones": "lightning / plain", "matched": "lightning full / plain full",
                 "defaults": "lightning defaults / plain full", "defaults over matched": "lightning defaults / lightning full"}


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
    groups = {}
    for value, g in zip(diffs, gens):
        groups.setdefault(g, []).append(value)
    units = [float(stats.trim_mean(v, trim)) for v in groups.values()]
    ci = t_interval(units)
    return {**ci, "unit": "generation", "trim": trim, "rounds": len(diffs)} if ci else None
