"""Intervals the report states: spreads, paired ratios and differences, per round or per worker process."""

from __future__ import annotations

import numpy as np
from scipy import stats


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


def clustered(values: list[float], clusters: list | None, aggregate=np.mean) -> tuple[list[float], str]:
    """The units an interval is taken over: with values from several worker processes (generations), one
    `aggregate` (mean) per process, so whatever differs between processes is inside the interval; else the values."""
    if clusters is None:
        return list(values), "round"
    groups = {}
    for value, cluster in zip(values, clusters):
        groups.setdefault(cluster, []).append(value)
    return [float(aggregate(g)) for g in groups.values()], "generation"


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
