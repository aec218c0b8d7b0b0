"""Cells of the report: a spread, a ratio with its interval (or its range, or none at n=1), a µs difference."""

from __future__ import annotations

from tabulate import tabulate

from benchmarks.summary import MIN_CI_N

ACC_NAMES = {"cpu": "CPU", "gpu": "GPU"}
NOT_MEASURED = "not measured"
NO_RATIO = "n=1: no ratio"


def fmt(stat: dict | None, unit: str = "", digits: int = 2) -> str:
    """'median [q1-q3]' of a spread, or 'not measured'."""
    if not stat:
        return NOT_MEASURED
    if stat["n"] == 1:
        return f"{stat['median']:.{digits}f}{unit} (n=1)"
    return f"{stat['median']:.{digits}f}{unit} [{stat['q1']:.{digits}f}-{stat['q3']:.{digits}f}]"


def _n(stat: dict) -> str:
    """'n=60', or 'n=10 processes' where the interval is over worker processes (generations of rounds)."""
    return f"n={stat['n']}" + (" processes" if stat.get("unit") == "generation" else "")


def fmt_ratio(ratio: dict | None, digits: int = 2) -> str:
    """Geometric mean with its 95 % CI where the n allows one, else the range of the n ratios (what it is)."""
    if not ratio:
        return NOT_MEASURED
    value = ratio["ratio"]
    if ratio["n"] == 1:  # one pair says nothing of the spread: no ratio is shown
        return NO_RATIO
    if ratio.get("ci95") and ratio["n"] >= MIN_CI_N:
        low, high = ratio["ci95"]
        return f"{value:.{digits}f}x (95% CI {low:.{digits}f}-{high:.{digits}f}, {_n(ratio)})"
    low, high = ratio.get("range") or ratio.get("ci95") or (value, value)
    return f"{value:.{digits}f}x (range {low:.{digits}f}-{high:.{digits}f}, {_n(ratio)})"


def fmt_interval(ci: dict | None, unit: str = " µs", digits: int = 0) -> str:
    """mean ± half-width of a t-interval; under MIN_CI_N units, the mean and the range of the units instead."""
    if not ci:
        return NOT_MEASURED
    if ci["n"] < MIN_CI_N:
        low, high = ci["range"]
        return f"{ci['mean']:+.{digits}f}{unit} (range {low:+.{digits}f} to {high:+.{digits}f}, {_n(ci)})"
    return f"{ci['mean']:+.{digits}f}{unit} ± {ci['half_width']:.{digits}f} ({_n(ci)})"


def _table(rows, headers) -> str:
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
