"""Write reports/<name>/: comparison.md (tabulate), PNG plots and benchmark.json, swapped in whole."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from tabulate import tabulate

from benchmarks import plots
from benchmarks.loc import LineCount, total
from benchmarks.runner import SIDE_NAMES as NAMES
from benchmarks.runner import SIDES

ACC_NAMES = {"cpu": "CPU", "gpu": "GPU"}
NOT_MEASURED = "not measured"
CLAIMS = {  # what the tutorial this project grew from says, quoted
    "lines": "Code Lines ~200+ (pure PyTorch) vs ~50 (Lightning)",
    "runtime_cpu": "Expected runtime 5-10 minutes on CPU (900 samples, up to 30 epochs)",
    "runtime_gpu": "Expected runtime 2-3 minutes on GPU",
    "accuracy": "Accuracy 0.7833, F1 (macro) 0.7591 on its 900-sample dataset",
}


def fmt(stat: dict | None, unit: str = "", digits: int = 2) -> str:
    """'median [q1-q3]' of a spread, or 'not measured'."""
    if not stat:
        return NOT_MEASURED
    if stat["n"] == 1:
        return f"{stat['median']:.{digits}f}{unit} (n=1)"
    return f"{stat['median']:.{digits}f}{unit} [{stat['q1']:.{digits}f}-{stat['q3']:.{digits}f}]"


def fmt_ratio(ratio: dict | None) -> str:
    if not ratio:
        return NOT_MEASURED
    ci = f" (95% CI {ratio['ci95'][0]:.2f}-{ratio['ci95'][1]:.2f})" if ratio["ci95"] else ""
    return f"{ratio['median']:.2f}x{ci}, n={ratio['n']}"


def _table(rows, headers) -> str:
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def loc_totals(loc: dict) -> dict[str, LineCount]:
    """Per-package sums of the recorded per-file counts."""
    return {pkg: total({k: LineCount(**v) for k, v in files.items()}) for pkg, files in loc.items()}


def loc_section(loc: dict) -> list[str]:
    totals = loc_totals(loc)
    rows = [[path, c["raw"], c["source"], c["statements"]] for files in loc.values() for path, c in files.items()]
    rows += [[f"**total {pkg}/**", t.raw, t.source, t.statements] for pkg, t in totals.items()]
    p, lt = totals["plain_pytorch"], totals["lightning_impl"]
    return ["## Lines of code", _table(rows, ["file", "raw lines", "source lines", "statements"]),
            f"\nSource lines exclude blanks, comments and docstrings; statements count `ast.stmt` nodes, which line "
            f"wrapping cannot change. `shared/` is used by both and charged to neither. Lightning's side has "
            f"{lt.source} source lines against plain PyTorch's {p.source} ({lt.source / max(p.source, 1):.2f}x).\n"]


def runtime_section(summary: dict) -> list[str]:
    labels = {"wall_seconds": ("end-to-end wall time", " s"), "first_step_seconds": ("launch to first optimizer step", " s"),
              "import_seconds": ("import of the training module", " s"), "step_ms": ("steady-state time per step", " ms"),
              "samples_per_s": ("steady-state throughput", " samples/s")}
    rows = []
    for acc in ("cpu", "gpu"):
        for key, (label, unit) in labels.items():
            entry = summary.get(acc, {}).get("runtime", {}).get(key)
            cells = [fmt(entry["sides"][s], unit, 1 if key == "samples_per_s" else 2) if entry else NOT_MEASURED for s in SIDES]
            rows.append([ACC_NAMES[acc], label, *cells, fmt_ratio(entry["ratio"]) if entry else NOT_MEASURED])
    return ["## Runtime", _table(rows, ["device", "measure", *map(NAMES.get, SIDES), "Lightning / plain (paired)"]),
            "\nEach run is a fresh process started through the side's real CLI, the two sides alternating (A B, then B A); "
            "a warm-up round is excluded. Cells give the median [interquartile range]; the ratio is the median of per-round "
            "ratios with a percentile-bootstrap 95% CI (with 3 rounds the CI is little more than the range). Steady state "
            "excludes each run's first epoch; on CUDA every timed region ends with `torch.cuda.synchronize()`.\n"]


def decomposition_section(summary: dict) -> list[str]:
    rows = []
    for acc, s in summary.items():
        d = s["decomposition"]
        for label in ("barebones", "full"):
            rows.append([ACC_NAMES[acc], label, *(f"{fmt(d['step_ms'][label][side], ' ms')} / {fmt(d['wall_seconds'][label][side], ' s', 1)}"
                                                  for side in SIDES), fmt_ratio(d["framework_gap"][label])])
        rows.append([ACC_NAMES[acc], "feature cost: full / barebones", *(fmt_ratio(d["feature_cost"][side]) for side in SIDES), ""])
    return ["## Overhead decomposition",
            _table(rows, ["device", "setting", *(f"{NAMES[s]}: ms/step / wall" for s in SIDES), "Lightning / plain (paired)"]),
            "\nFixed-length runs (no early stopping). `barebones` switches off logging, checkpoints, the progress bar and "
            "early stopping on both sides (Lightning's `Trainer(barebones=True)`); `full` has them all. The barebones "
            "Lightning/plain ratio is what the framework's loop itself costs; full/barebones is what the features cost on "
            "each side. Ratios are paired within a round; a CI that spans 1.00x means no difference was resolved.\n"]


def variants_section(summary: dict) -> list[str]:
    rows = [[ACC_NAMES[acc], name, *(fmt(v["step_ms"][side], " ms") for side in SIDES), fmt_ratio(v["ratio"])]
            for acc, s in summary.items() for name, v in s["variants"].items()]
    if not rows:
        return []
    return ["## Precision, memory format, compilation and DDP", _table(rows, ["device", "variant", *(f"{NAMES[s]} ms/step" for s in SIDES), "L / P"]),
            "\nBarebones fixed-length runs with one change each (compare with the barebones row above). DDP runs use 2 "
            "processes sharing the same cores (1 thread each on the CPU), launched by `torchrun` (plain) and the Trainer "
            "(Lightning); per-step time there is per rank, with each rank on half the data.\n"]


def memory_section(summary: dict) -> list[str]:
    rows = []
    for acc in ("cpu", "gpu"):
        rt = summary.get(acc, {}).get("runtime")
        rows.append([ACC_NAMES[acc], "peak RSS of the process", *(fmt(rt["max_rss_mib"]["sides"][s], " MiB", 0) if rt else NOT_MEASURED for s in SIDES)])
        rows.append([ACC_NAMES[acc], "torch.cuda.max_memory_allocated",
                     *(fmt(rt["cuda_peak_mib"]["sides"][s], " MiB", 1) if rt else NOT_MEASURED for s in SIDES)])
    return ["## Memory", _table(rows, ["device", "measure", *map(NAMES.get, SIDES)]),
            "\nResident set size comes from the kernel (`wait4` rusage of each training process); it includes the Python "
            "interpreter and imported libraries, so it shows what importing Lightning costs as well.\n"]


def metrics_section(summary: dict) -> list[str]:
    rows = []
    for acc, s in summary.items():
        for key, row in s["final_metrics"].items():
            if key == "per_class_f1":
                continue
            cells = [_mean_std(row.get(side)) for side in SIDES]
            gap = f"{row['gap']:+.4f} ({row['gap_in_seed_std']:+.2f} seed-std)" if row.get("gap_in_seed_std") is not None else (f"{row['gap']:+.4f}" if "gap" in row else NOT_MEASURED)
            rows.append([ACC_NAMES[acc], key, *cells, gap])
    per_class = [[ACC_NAMES[acc], name, *(f"{s['final_metrics']['per_class_f1'][side].get(name, float('nan')):.3f}" for side in SIDES)]
                 for acc, s in summary.items() for name in s["final_metrics"]["per_class_f1"]["plain"]]
    return ["## Final test metrics", _table(rows, ["device", "metric", *map(NAMES.get, SIDES), "Lightning - plain"]),
            "\nMean ± sample std over the seeds of the timed rounds (one seed per round, the same seed on both sides). A gap "
            "well inside one seed-std means the framework does not change what is learned.\n",
            _table(per_class, ["device", "class", *(f"{NAMES[s]} F1" for s in SIDES)]),
            "\nPer-class F1 (mean over the same seeds): on imbalanced real data the macro average hides which defects are missed.\n"]


def _mean_std(cell: dict | None) -> str:
    if not cell:
        return NOT_MEASURED
    std = f" ± {cell['std']:.4f}" if cell["std"] is not None else ""
    return f"{cell['mean']:.4f}{std} (n={cell['n']})"


def parity_section(summary: dict) -> list[str]:
    rows = [[ACC_NAMES[acc], p["seed"], "yes" if p["initial_weights_identical"] else "NO",
             f"{p['max_step_loss_diff_epoch0']:.2e} over {p['steps_compared']} steps", f"{p['max_step_loss_diff_all']:.2e}",
             f"{p['epochs_run']['plain']} / {p['epochs_run']['lightning']}", "yes" if p["final_weights_identical"] else "no"]
            for acc, s in summary.items() for p in s["parity"]]
    return ["## Parity", _table(rows, ["device", "seed", "same initial weights", "max abs Δ loss, epoch 0", "max abs Δ loss, whole run",
                                       "epochs run P / L", "identical final weights"]),
            "\nBoth sides start from the same weights (SHA-256 of the state dict), see the same batches in the same order "
            "and re-seed dropout per epoch; the per-step training-loss difference shows how closely they do the same "
            "arithmetic (goal on CPU: ≤ 1e-6).\n"]


def mfu_section(summary: dict) -> list[str]:
    rows = []
    for acc, s in summary.items():
        m = s["mfu"]
        for side in SIDES:
            v = m["sides"].get(side)
            rows.append([ACC_NAMES[acc], NAMES[side], f"{m['flops_per_sample'] / 1e9:.3f}" if m["flops_per_sample"] else NOT_MEASURED,
                         f"{v['achieved_flops_per_s'] / 1e9:.1f}" if v else NOT_MEASURED,
                         f"{m['ceiling_flops_per_s'] / 1e9:.1f}" if m["ceiling_flops_per_s"] else NOT_MEASURED,
                         f"{100 * v['mfu']:.1f} %" if v else NOT_MEASURED])
    return ["## Model FLOP utilisation", _table(rows, ["device", "side", "train GFLOP/sample", "achieved GFLOP/s", "fp32 matmul GFLOP/s", "MFU"]),
            "\nTraining FLOPs per sample (forward + backward, `torch.utils.flop_counter`) times steady-state samples/s, over "
            "the FLOP/s of a large fp32 matmul measured on the same device in the same run.\n"]


def claims_section(raw: dict, summary: dict) -> list[str]:
    loc = {pkg: t.source for pkg, t in loc_totals(raw["lines_of_code"]).items()}
    def wall(acc):
        rt = summary.get(acc, {}).get("runtime")
        return " / ".join(f"{NAMES[s]} {fmt(rt['wall_seconds']['sides'][s], ' s', 1)}" for s in SIDES) if rt else NOT_MEASURED
    metrics = next(iter(summary.values()))["final_metrics"] if summary else {}
    acc_f1 = " / ".join(f"{NAMES[s]} accuracy {metrics['accuracy'][s]['mean']:.4f}, F1 {metrics['f1_macro'][s]['mean']:.4f}"
                        for s in SIDES if metrics and metrics["accuracy"].get(s))
    rows = [[CLAIMS["lines"], f"{loc['plain_pytorch']} vs {loc['lightning_impl']} source lines (+{loc['shared']} shared)"],
            [CLAIMS["runtime_cpu"], wall("cpu")], [CLAIMS["runtime_gpu"], wall("gpu")],
            [CLAIMS["accuracy"], acc_f1 or NOT_MEASURED]]
    return ["## Claims checked", _table(rows, ["the tutorial says", f"measured here ({raw['profile']} profile)"]),
            "\nThe tutorial's dataset is not ours (its synthetic maps are unknown), so accuracy is comparable only in kind; "
            "its line counts are for single scripts, while here `shared/` (model, data, metrics, plots) is charged to "
            "neither side and both sides carry resume, DDP and an evaluate command.\n"]


def header(raw: dict) -> list[str]:
    m = raw["machine"]
    rows = [["CPU", f"{m['cpu']} ({m['cores']} cores, {m['memory_gib']} GiB)"], ["GPU", m["gpu"] or "none"],
            ["software", f"Python {m['python']}, torch {m['torch']}, lightning {m['lightning']}"],
            ["OS", m["os"]], ["date", m["date"]], ["profile", f"`{raw['profile']}`: {raw['profile_notes']}"]]
    return [f"# Plain PyTorch vs Lightning: {raw['profile']} profile", "",
            "Generated by `pytest benchmarks --profile " + raw["profile"] + "`; every figure below was measured in this run "
            "on this machine.", "", _table(rows, ["machine", ""]), ""]


def errors_section(summary: dict) -> list[str]:
    rows = [[ACC_NAMES[acc], NAMES[side], msg] for acc, s in summary.items() for side, msgs in s["errors"].items() for msg in msgs]
    if not rows:
        return []
    return ["## Failed runs", _table(rows, ["device", "side", "run and error"]),
            "\nThese runs are missing from the tables above; the rest of the report is still valid.\n"]


def render_markdown(raw: dict, summary: dict) -> str:
    parts = header(raw) + errors_section(summary) + loc_section(raw["lines_of_code"]) + runtime_section(summary)
    parts += decomposition_section(summary) + variants_section(summary) + memory_section(summary)
    parts += metrics_section(summary) + parity_section(summary) + mfu_section(summary) + claims_section(raw, summary)
    parts += ["## Plots", "![runtime](runtime.png)", "![loss curves](loss_curves.png)",
              "![confusion matrices](confusion_matrices.png)", "![step-loss difference](step_loss_diff.png)", ""]
    return "\n".join(parts)


def rerender(report_dir: Path) -> Path:
    """Recompute the summary and rewrite the report from its own benchmark.json (no training, same figures)."""
    raw = json.loads((report_dir / "benchmark.json").read_text())["raw"]
    from benchmarks.summary import summarize

    return write_report(raw, summarize(raw), report_dir)


def write_report(raw: dict, summary: dict, report_dir: Path) -> Path:
    """Build the whole report in a temp folder, then swap it in: a crash never leaves a half-written report."""
    report_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=report_dir.parent, prefix=f".{report_dir.name}."))
    try:
        (tmp / "comparison.md").write_text(render_markdown(raw, summary), encoding="utf-8")
        (tmp / "benchmark.json").write_text(json.dumps({"raw": raw, "summary": summary}, indent=1), encoding="utf-8")
        plots.write_all(raw, tmp)
        old = report_dir.with_name(f".{report_dir.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if report_dir.exists():
            os.replace(report_dir, old)
        os.replace(tmp, report_dir)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report_dir


if __name__ == "__main__":  # python -m benchmarks.report reports/seed: re-render after a change to this file
    import sys

    for folder in sys.argv[1:]:
        print(rerender(Path(folder)) / "comparison.md")
