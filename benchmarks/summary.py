"""Turn the raw run records into the figures of the report: medians, spreads, ratios, parity."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from benchmarks.runner import SIDES
from benchmarks.stats import CONFIDENCE, MIN_CI_N, clustered, clustered_interval, paired_ratio, spread, t_interval  # noqa: F401
from benchmarks.summary_blocks import (  # noqa: F401
    ARM_PAIRS,
    FEATURE_SWITCHES,
    HEADLINE_ARMS,
    PRICE_SIDES,
    block_errors,
    feature_pairs,
    floor_shares,
    step_overhead,
    summarize_blocks,
)
from shared.config import TrainConfig


@lru_cache(maxsize=8)
def _train_size(config_items: tuple) -> int:
    from shared.data import split_dataset

    return len(split_dataset(TrainConfig(**dict(config_items))).train)


def train_size(metrics: dict) -> int:
    """Training maps per epoch of a run, as its record says (older records: rebuilt from its config)."""
    if metrics.get("train_size"):
        return metrics["train_size"]
    keep = ("data", "samples_per_class", "balance_classes", "image_size", "val_fraction", "test_fraction", "seed")
    return _train_size(tuple((k, metrics["config"][k]) for k in keep))


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
    return train_size(metrics) / (step * metrics["steps_per_epoch"])


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
    return {"runtime": runtime, "blocks": blocks, "floors": floor_shares(measured_floors(entry), blocks),
            "variants": variants, "final_metrics": final_metrics(e2e),
            "parity": parity(e2e), "mfu": mfu(runtime, entry), "retried": retried(runs), "errors": failed}


def measured_floors(entry: dict) -> dict | None:
    """Each setting's floor: the mean over the worker processes that measured it (records before that: the one
    measurement the suite's own process took)."""
    per_worker = (entry.get("blocks") or {}).get("floors")
    if not per_worker:
        return entry.get("floors")
    out = {}
    for name, rows in per_worker.items():
        ok = [r for r in rows if r.get("ok")]
        if ok:
            out[name] = {"us_per_step": float(np.mean([r["us_per_step"] for r in ok])), "n": len(ok),
                         "method": ok[0]["method"] + f", in each of the {len(ok)} worker process(es) of the blocks"}
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
    # per run, in round order: the seeded bootstrap 95 % interval of macro-F1 over its test maps (model fixed)
    out["f1_macro_bootstrap_95"] = {s: [(r["seed"], r["metrics"]["test"].get("f1_macro_bootstrap_95"))
                                        for r in runs if r["ok"] and r["side"] == s] for s in SIDES}
    first = next((r for r in runs if r["ok"]), None)  # every run of a profile scores a split of the same class mix
    out["support"] = {name: c["support"] for name, c in first["metrics"]["test"]["per_class"].items()} if first else {}
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

