"""Turn the raw run records into the figures of the report: medians, spreads, ratios, parity."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.stats import bootstrap

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


def paired_ratio(numerators: list[float], denominators: list[float]) -> dict | None:
    """Median of per-round ratios with a percentile-bootstrap 95 % CI (few rounds give a wide CI)."""
    ratios = [a / b for a, b in zip(numerators, denominators) if a and b]
    if not ratios:
        return None
    out = {"median": float(np.median(ratios)), "n": len(ratios), "ci95": None}
    if len(ratios) >= 2 and len(set(ratios)) > 1:
        ci = bootstrap((np.asarray(ratios),), np.median, confidence_level=0.95, method="percentile",
                       n_resamples=2000, random_state=0).confidence_interval
        out["ci95"] = [float(ci.low), float(ci.high)]
    return out


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
            out[r["side"]].append(f"{r['kind']}/{r['label']} r{r['round']}: {r['error']}")
    return out


def summarize_accelerator(entry: dict) -> dict:
    """Every table's numbers for one accelerator."""
    runs = entry["runs"]
    e2e = _select(runs, "end_to_end")
    figures = ("wall_seconds", "first_step_seconds", "step_ms", "samples_per_s", "max_rss_mib", "cuda_peak_mib")
    runtime = {f: {"sides": {s: spread(v) for s, v in _by_side(e2e, f).items()}, "ratio": _paired(e2e, f)}
               for f in figures}
    imports = entry["imports"]
    runtime["import_seconds"] = {"sides": {s: spread(imports[s]) for s in SIDES},
                                 "ratio": paired_ratio(imports["lightning"], imports["plain"])}
    decomposition = decompose(_select(runs, "decomposition"))
    variants = {}
    for label in dict.fromkeys(r["label"] for r in _select(runs, "variant")):  # in plan order
        chosen = _select(runs, "variant", label)
        variants[label] = {"step_ms": {s: spread(v) for s, v in _by_side(chosen, "step_ms").items()},
                           "samples_per_s": {s: spread(v) for s, v in _by_side(chosen, "samples_per_s").items()},
                           "ratio": _paired(chosen, "step_ms")}
    return {"runtime": runtime, "decomposition": decomposition,
            "variants": variants, "final_metrics": final_metrics(e2e), "parity": parity(e2e),
            "mfu": mfu(runtime, entry), "errors": errors(runs)}


def decompose(runs: list[dict]) -> dict:
    """ms/step per side and setting, the framework gap (L/P) per setting and the feature cost (full/barebones)
    per side, each ratio paired within a round so slow drift of the machine cancels."""
    out = {"step_ms": {}, "wall_seconds": {}, "framework_gap": {}, "feature_cost": {}}
    for label in ("barebones", "full"):
        chosen = _select(runs, "decomposition", label)
        out["step_ms"][label] = {s: spread(v) for s, v in _by_side(chosen, "step_ms").items()}
        out["wall_seconds"][label] = {s: spread(v) for s, v in _by_side(chosen, "wall_seconds").items()}
        out["framework_gap"][label] = _paired(chosen, "step_ms")
    for side in SIDES:
        own = [r for r in runs if r["side"] == side]
        out["feature_cost"][side] = _paired(own, "step_ms", key="label", over=("full", "barebones"))
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
            "epochs_run": {"plain": p["epochs_run"], "lightning": lt["epochs_run"]},
            "final_weights_identical": p["final_weights_sha256"] == lt["final_weights_sha256"],
        })
    return rows


def mfu(runtime: dict, entry: dict) -> dict:
    """Model FLOP utilisation: training FLOPs/sample x steady samples/s over the measured matmul ceiling."""
    per_sample, ceiling = entry.get("flops_per_sample"), (entry.get("ceiling") or {}).get("flops_per_s")
    out = {"flops_per_sample": per_sample, "ceiling_flops_per_s": ceiling, "sides": {}}
    for side in SIDES:
        sps = runtime["samples_per_s"]["sides"][side]
        if sps and per_sample and ceiling:
            achieved = per_sample * sps["median"]
            out["sides"][side] = {"achieved_flops_per_s": achieved, "mfu": achieved / ceiling}
    return out


def summarize(raw: dict) -> dict:
    return {acc: summarize_accelerator(entry) for acc, entry in raw["accelerators"].items()}
