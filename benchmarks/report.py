"""Write reports/<name>/: comparison.md (tabulate), PNG plots and benchmark.json, swapped in whole."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
from pathlib import Path

from benchmarks import plots
from benchmarks.formatting import ACC_NAMES, NOT_MEASURED, _table, fmt, fmt_ratio
from benchmarks.report_cost import answer_first, arms_section, floor_section, gpu_checks_section, like_for_like_section, price_list_section
from benchmarks.report_loc import loc_roles, loc_section, loc_totals
from benchmarks.runner import SIDE_NAMES as NAMES
from benchmarks.runner import SIDES
from benchmarks.suite import CPU_FLAGS
from benchmarks.summary import MIN_CI_N, per_accelerator

CLAIMS = {  # what the tutorial this project grew from says, quoted
    "lines": "Code Lines ~200+ (pure PyTorch) vs ~50 (Lightning)",
    "runtime_cpu": "Expected runtime 5-10 minutes on CPU (900 samples, up to 30 epochs)",
    "runtime_gpu": "Expected runtime 2-3 minutes on GPU",
    "accuracy": "Accuracy 0.7833, F1 (macro) 0.7591 on its 900-sample dataset",
}
CLAIMS_PROFILE = "seed"  # the tutorial's setting (900 synthetic maps, batch 32, up to 30 epochs)


def runtime_section(raw: dict, summary: dict) -> list[str]:
    labels = {"wall_seconds": ("end-to-end wall time", " s"), "first_step_seconds": ("launch to first optimizer step", " s"),
              "import_seconds": ("import of the training module", " s"), "step_ms": ("steady-state time per step", " ms"),
              "samples_per_s": ("steady-state throughput", " samples/s")}
    rows = []
    for acc in raw["accelerators"]:  # what this run measured (a GPU lease's report has no CPU rows)
        for key, (label, unit) in labels.items():
            entry = summary.get(acc, {}).get("runtime", {}).get(key)
            cells = [fmt(entry["sides"][s], unit, 1 if key == "samples_per_s" else 2) if entry else NOT_MEASURED for s in SIDES]
            rows.append([ACC_NAMES[acc], label, *cells, fmt_ratio(entry["ratio"]) if entry else NOT_MEASURED])
    return ["## Runtime (fresh processes)", _table(rows, ["device", "measure", *map(NAMES.get, SIDES), "Lightning / plain (paired)"]),
            "\nFresh processes through each side's real CLI, all features on (see Method).\n"]


def runtime_protocol(raw: dict) -> str:
    """The end-to-end protocol, as the records say it ran."""
    runs = [r for e in raw["accelerators"].values() for r in e["runs"] if r["kind"] == "end_to_end"]
    rounds = len({(r["accelerator"], r["round"]) for r in runs}) // max(len(raw["accelerators"]), 1)
    warmup = any(r["kind"] == "warmup" for e in raw["accelerators"].values() for r in e["runs"])
    sizes = sorted({_train_maps(r) for r in runs if r.get("metrics")} - {None})
    ratio = ("the ratio is the geometric mean of per-round ratios with a t-interval on their logs" if rounds >= MIN_CI_N
             else f"with {rounds} round(s) the ratio column gives the geometric mean and the range of the per-round "
                  f"ratios, not a confidence interval")
    return (f"Each run is a fresh process started through the side's real CLI, {rounds} round(s) per side with the "
            f"sides alternating (A B, then B A); {'a warm-up round is excluded' if warmup else 'no warm-up round'}. "
            f"Training set: {', '.join(f'{n:,}' for n in sizes) or NOT_MEASURED} maps. Cells give the median "
            f"[interquartile range]; {ratio}. Steady state excludes each run's first epoch; on CUDA every timed region "
            f"ends with `torch.cuda.synchronize()`. These runs measure start-up and the end-to-end time; the per-step "
            f"cost of the framework is resolved by the interleaved blocks below.")


def _train_maps(run: dict) -> int | None:
    from benchmarks.summary import train_size

    try:
        return train_size(run["metrics"])
    except (KeyError, ValueError, OSError):
        return None


def blocks_protocol(raw: dict, summary: dict) -> str:
    """The block protocol, from what ran."""
    parts = []
    for acc, entry in raw["accelerators"].items():
        blocks = entry.get("blocks")
        if not blocks or not blocks.get("settings"):
            continue
        first = next(iter(blocks["settings"].values()))
        flags = first["flags"]
        epochs = flags[len(flags) - 1 - flags[::-1].index("--epochs") + 1]
        warmup = blocks.get("warmup_rounds", 0)
        rows = summary[acc]["blocks"]["settings"]
        shares = "; ".join(f"{name}: {row['rounds']} rounds" + (f" in {row['generations']} processes"
                                                                 if row["generations"] > 1 else " in one process")
                           for name, row in rows.items())
        parts.append(f"{ACC_NAMES[acc]}: {shares}; {warmup} warm-up round(s) at the start of each process's share "
                     f"of a setting (measured, left out), {epochs} epoch(s) per block, {blocks['threads']} thread(s) "
                     "in the worker" + load_note(blocks, raw["machine"]["cores"]))
    return ("Both sides' real `fit(cfg)` run in one long-lived worker process (both imported once), a block at a "
            "time: a round runs one block per arm back to back in a shuffled order: plain and Lightning barebones "
            "(`--barebones`), plain again for the A/A control, and with every feature on plain, Lightning matched and "
            "Lightning defaults (`--lightning-defaults`). A block is a fixed-length run (no early stopping) and its "
            "time per step is the sum of its epochs' training-loop time over its steps (each side times its own "
            "loop: the plain `train_one_epoch`, Lightning's `RunRecorder`), in process CPU time and in wall time; "
            "where a setting leaves its first epochs out (compilation, CUDA-graph recording), only the epochs after "
            "them count. "
            "A process runs at its own speed on a shared VM (where its memory landed): in one process that is common "
            "to every arm, and a setting's rounds are spread over fresh processes (generations) so that what is "
            "left of it is measured. Ratios are geometric means of per-round ratios; where a setting ran in several "
            "processes the Student-t 95% interval is over the per-process means of the log ratios (n = processes), "
            "in one process over the rounds (n = rounds: it then leaves out process-to-process variation); "
            "differences in µs are treated alike; ranges are given below "
            f"{MIN_CI_N} units. `step` is the profile's setting, `fixed` a near-zero-cost step (1-channel CNN, 8x8 "
            "maps, batch 1) where the framework's own cost dominates, `sweep ...` settings vary the step's cost. "
            + "; ".join(parts) + ".")


def load_note(blocks: dict, cores: int) -> str:
    """The machine's 1-minute load average over the blocks: above cores - 1, other work shared the cores."""
    loads = [b["loadavg_1min"] for st in blocks["settings"].values() for b in st["blocks"] if "loadavg_1min" in b]
    if not loads:
        return ""
    typical = statistics.median(loads)
    note = f"; 1-minute load average {min(loads):.1f}-{max(loads):.1f} (median {typical:.1f}) on {cores} cores"
    # one worker runs at a time, so ~1 busy core; the median, since the average lags the phase before the blocks
    if typical > cores - 0.5:
        note += (" (other work shared the machine during the blocks: their noise, and so their intervals, are "
                 "wider than this machine's own)")
    return note


def variants_section(raw: dict, summary: dict) -> list[str]:
    rows = [[ACC_NAMES[acc], name, *(fmt(v["step_ms"][side], " ms") for side in SIDES), fmt_ratio(v["ratio"])]
            for acc, s in per_accelerator(summary).items() for name, v in s["variants"].items()]
    if not rows:
        return []
    cores = raw["machine"].get("cores") or 2
    return ["## Precision, memory format, compilation and DDP", _table(rows, ["device", "variant", *(f"{NAMES[s]} ms/step" for s in SIDES), "L / P"]),
            "\nBarebones fixed-length fresh-process runs with one change each (compare with the `step` blocks above, "
            f"which run the same flags without the change). DDP runs use 2 processes sharing the same {cores} cores "
            f"({max(1, cores // 2)} thread(s) each on the CPU), launched by `torchrun` (plain) and the Trainer "
            "(Lightning); per-step time there is per rank, with each rank on half the data.\n"]


def memory_section(summary: dict) -> list[str]:
    rows = []
    for acc in per_accelerator(summary):
        rt = summary.get(acc, {}).get("runtime")
        rows.append([ACC_NAMES[acc], "peak RSS of the process",
                     *(fmt(rt["max_rss_mib"]["sides"][s], " MiB", 0) if rt else NOT_MEASURED for s in SIDES)])
        rows.append([ACC_NAMES[acc], "torch.cuda.max_memory_allocated",
                     *(fmt(rt["cuda_peak_mib"]["sides"][s], " MiB", 1) if rt else NOT_MEASURED for s in SIDES)])
    return ["## Memory", _table(rows, ["device", "measure", *map(NAMES.get, SIDES)]),
            "\nResident set size comes from the kernel (`wait4` rusage of each training process); it includes the Python "
            "interpreter and imported libraries, so it shows what importing Lightning costs as well.\n"]


def metrics_section(summary: dict, report_dir: Path | None = None) -> list[str]:
    rows = []
    for acc, s in per_accelerator(summary).items():
        for key, row in s["final_metrics"].items():
            if key in ("per_class_f1", "f1_macro_bootstrap_95", "support"):
                continue
            cells = [_mean_std(row.get(side)) for side in SIDES]
            gap = (f"{row['gap']:+.4f} ({row['gap_in_seed_std']:+.2f} seed-std)" if row.get("gap_in_seed_std") is not None
                   else (f"{row['gap']:+.4f}" if "gap" in row else NOT_MEASURED))
            rows.append([ACC_NAMES[acc], key, *cells, gap])
    per_class = [[ACC_NAMES[acc], name, *(f"{s['final_metrics']['per_class_f1'][side].get(name, float('nan')):.3f}" for side in SIDES),
                  s["final_metrics"].get("support", {}).get(name, "")]
                 for acc, s in per_accelerator(summary).items() for name in s["final_metrics"]["per_class_f1"]["plain"]]
    boot = [f"{ACC_NAMES[acc]} {NAMES[side]}: " + "; ".join(f"seed {seed} {ci[0]:.3f}-{ci[1]:.3f}" for seed, ci in runs if ci)
            for acc, s in per_accelerator(summary).items()
            for side, runs in s["final_metrics"].get("f1_macro_bootstrap_95", {}).items() if any(ci for _, ci in runs)]
    lines = ["## Final test metrics", _table(rows, ["device", "metric", *map(NAMES.get, SIDES), "Lightning - plain"]),
             "\nMean ± sample std over the seeds of the timed rounds (one seed per round, the same seed on both sides). A gap "
             "well inside one seed-std means the framework does not change what is learned.\n"]
    if boot:
        lines.append("Macro-F1, bootstrap 95 % interval over each run's test maps (1,000 resamples, model fixed): "
                     + " | ".join(boot) + ".\n")
    lines += [_table(per_class, ["device", "class", *(f"{NAMES[s]} F1" for s in SIDES), "test maps"]),
              "\nPer-class F1 (mean over the same seeds) beside each class's test maps: on imbalanced real data the "
              "macro average hides which defects are missed.\n"]
    if report_dir is not None and (report_dir / "frontier.md").is_file():
        lines.append("How the recipe was chosen (on validation) and its test figure over several seeds: "
                     "[frontier.md](frontier.md).\n")
    return lines


def _mean_std(cell: dict | None) -> str:
    if not cell:
        return NOT_MEASURED
    std = f" ± {cell['std']:.4f}" if cell["std"] is not None else ""
    return f"{cell['mean']:.4f}{std} (n={cell['n']})"


def parity_section(summary: dict) -> list[str]:
    rows = [[ACC_NAMES[acc], p["seed"], "yes" if p["initial_weights_identical"] else "NO",
             f"{p['max_step_loss_diff_epoch0']:.2e} over {p['steps_compared']} steps", f"{p['max_step_loss_diff_all']:.2e}",
             f"{p['epochs_run']['plain']} / {p['epochs_run']['lightning']}", "yes" if p["final_weights_identical"] else "no"]
            for acc, s in per_accelerator(summary).items() for p in s["parity"]]
    return ["## Parity", _table(rows, ["device", "seed", "same initial weights", "max abs Δ loss, epoch 0", "max abs Δ loss, whole run",
                                       "epochs run P / L", "identical final weights"]),
            "\nBoth sides start from the same weights (SHA-256 of the state dict), see the same batches in the same order "
            "and re-seed dropout per epoch; the per-step training-loss difference shows how closely they do the same "
            "arithmetic (goal on CPU: ≤ 1e-6).\n"]


def mfu_section(raw: dict, summary: dict) -> list[str]:
    rows, notes = [], []
    for acc, s in per_accelerator(summary).items():
        m, entry = s["mfu"], raw["accelerators"][acc]
        for side in SIDES:
            v = m["sides"].get(side)
            rows.append([ACC_NAMES[acc], NAMES[side], _g(m["flops_per_sample"], 3),
                         _g(v and v["achieved_flops_per_s"]), _g(m["peak_flops"]), _g(m["measured_ceiling_flops"]),
                         _pct(v and v["mfu_vs_peak"]), _pct(v and v["fraction_of_ceiling"])])
        peak = entry.get("peak") or {}
        before, after = entry.get("ceiling_before") or {}, entry.get("ceiling_after") or {}
        ceiling = ", ".join(f"{when}: {_g(c.get('flops_per_s'))} GFLOP/s wall"
                            + (f", {_g(c['flops_per_cpu_second'])} GFLOP per CPU-second"
                               if c.get("flops_per_cpu_second") else "") if c.get("flops_per_s") else f"{when}: {c.get('error', NOT_MEASURED)}"
                            for when, c in (("before", before), ("after", after)))
        size = f"best of {before.get('repeats')} fp32 {before.get('n')}² matmuls with {before.get('threads')} thread(s)" if before.get("n") else ""
        notes.append(f"{ACC_NAMES[acc]}: peak = {peak.get('basis', peak.get('error', NOT_MEASURED))}; ceiling = {size} ({ceiling}).")
    return ["## Model FLOP utilisation",
            _table(rows, ["device", "side", "train GFLOP/sample", "achieved GFLOP/s", "peak GFLOP/s",
                          "measured matmul GFLOP/s", "MFU (vs peak)", "of the matmul ceiling"]),
            "\nTraining FLOPs per sample (forward + backward, `torch.utils.flop_counter`) times the end-to-end runs' "
            "steady-state samples/s. MFU divides by the device's theoretical fp32 peak; the second figure divides by "
            "the best fp32 matmul measured in this run, before and after the training runs (their difference is the "
            "machine's drift). " + " ".join(notes) + "\n"]


def _g(flops: float | None, digits: int = 1) -> str:
    return f"{flops / 1e9:.{digits}f}" if flops else NOT_MEASURED


def _pct(x: float | None) -> str:
    return f"{100 * x:.1f} %" if x is not None else NOT_MEASURED


def claims_section(raw: dict, summary: dict) -> list[str]:
    loc = {pkg: t.source for pkg, t in loc_totals(raw["lines_of_code"]).items()}
    training = {pkg: r["training"].source for pkg, r in loc_roles(raw["lines_of_code"]).items()}
    def wall(acc):
        rt = summary.get(acc, {}).get("runtime")
        return " / ".join(f"{NAMES[s]} {fmt(rt['wall_seconds']['sides'][s], ' s', 1)}" for s in SIDES) if rt else NOT_MEASURED
    metrics = next(iter(per_accelerator(summary).values()))["final_metrics"] if per_accelerator(summary) else {}
    acc_f1 = " / ".join(f"{NAMES[s]} accuracy {metrics['accuracy'][s]['mean']:.4f}, F1 {metrics['f1_macro'][s]['mean']:.4f}"
                        for s in SIDES if metrics and metrics["accuracy"].get(s))
    rows = [[CLAIMS["lines"], f"{training['plain_pytorch']} vs {training['lightning_impl']} training source lines "
                              f"(+{loc['shared']} shared)"]]
    if raw["profile"] == CLAIMS_PROFILE:  # the runtime and accuracy claims are about this setting only
        rows += [[CLAIMS[f"runtime_{acc}"], wall(acc)] for acc in raw["accelerators"]]
        rows.append([CLAIMS["accuracy"], acc_f1 or NOT_MEASURED])
    return ["## Claims checked", _table(rows, ["the tutorial says", f"measured here ({raw['profile']} profile)"]),
            "\nThe tutorial's dataset is not ours (its synthetic maps are unknown), so accuracy is comparable only in kind; "
            "its line counts are for single scripts, while here `shared/` (model, data, metrics, plots) is charged to "
            "neither side and both sides carry resume, DDP and an evaluate command.\n"]


def header(raw: dict) -> list[str]:
    m = raw["machine"]
    flags = f", flags {' '.join(m['cpu_flags']) or 'none of ' + '/'.join(CPU_FLAGS)}" if "cpu_flags" in m else ""
    rows = [["CPU", f"{m['cpu']} ({m['cores']} cores, {m['memory_gib']} GiB{flags})"], ["GPU", m["gpu"] or "none"],
            ["software", f"Python {m['python']}, torch {m['torch']}, lightning {m['lightning']}"],
            ["OS", m["os"]], ["date", m["date"]], ["profile", f"`{raw['profile']}`: {raw['profile_notes']}"]]
    return [f"# Plain PyTorch vs Lightning: {raw['profile']} profile", "",
            "Generated by `pytest benchmarks --profile " + raw["profile"] + "`; every figure below was measured in this run "
            "on this machine.", "", _table(rows, ["machine", ""]), ""]


def errors_section(summary: dict) -> list[str]:
    rows = [[ACC_NAMES[acc], NAMES[side], msg] for acc, s in per_accelerator(summary).items() for side, msgs in s["errors"].items() for msg in msgs]
    again = [[ACC_NAMES[acc], msg] for acc, s in per_accelerator(summary).items() for msg in s.get("retried", ())]
    out = []
    if rows:
        out += ["## Failed runs", _table(rows, ["device", "side", "run and error"]),
                "\nThese runs are missing from the tables below; the rest of the report is still valid.\n"]
    if again:
        out += ["## Launches started again", _table(again, ["device", "run and first error"]),
                "\nThese multi-process launches failed once and were started again in a fresh folder; the tables "
                "use the second attempt.\n"]
    return out


def render_markdown(raw: dict, summary: dict, report_dir: Path | None = None) -> str:
    """Answer first, then the evidence, then the method."""
    parts = header(raw) + answer_first(raw, summary) + errors_section(summary) + like_for_like_section()
    parts += arms_section(summary) + price_list_section(summary) + floor_section(raw, summary)
    parts += runtime_section(raw, summary) + variants_section(raw, summary) + memory_section(summary)
    parts += metrics_section(summary, report_dir) + parity_section(summary) + mfu_section(raw, summary) + gpu_checks_section(raw)
    parts += claims_section(raw, summary) + loc_section(raw["lines_of_code"]) + method_section(raw, summary)
    parts += ["## Plots", "![runtime](runtime.png)", "![overhead vs step time](overhead_vs_step_time.png)",
              "![loss curves](loss_curves.png)",
              "![confusion matrices](confusion_matrices.png)", "![step-loss difference](step_loss_diff.png)", ""]
    return "\n".join(parts)


def method_section(raw: dict, summary: dict) -> list[str]:
    """How every figure above was measured, from the records of this run."""
    out = ["## Method", "**Fresh processes.** " + runtime_protocol(raw)]
    if any(e.get("blocks") for e in raw["accelerators"].values()):
        out.append("**Interleaved blocks.** " + blocks_protocol(raw, summary))
    return out + [""]


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
        summary["precision_history"] = precision_history(report_dir, raw, summary)
        (tmp / PRECISION_FILE).write_text(json.dumps(summary["precision_history"], indent=1), encoding="utf-8")
        checks = (raw["accelerators"].get("gpu") or {}).get("gpu_checks")
        if checks:
            (tmp / "gpu_checks.log").write_text(checks["log"], encoding="utf-8")
        (tmp / "comparison.md").write_text(render_markdown(raw, summary, report_dir), encoding="utf-8")
        (tmp / "benchmark.json").write_text(json.dumps({"raw": raw, "summary": summary}, indent=1), encoding="utf-8")
        plots.write_all(raw, summary, tmp)
        # what this report does not write stays: earlier micro-benchmark runs (what --benchmark-compare reads),
        # the frontier's files, a GPU check log
        for kept in (report_dir.iterdir() if report_dir.is_dir() else ()):
            if not (tmp / kept.name).exists():
                (shutil.copytree if kept.is_dir() else shutil.copy2)(kept, tmp / kept.name)
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


PRECISION_FILE = "precision.json"


def precision_history(report_dir: Path, raw: dict, summary: dict) -> dict[str, list[dict]]:
    """The barebones interval's half-width of every run of this design recorded beside the report, this one
    included (once: a re-render does not add it again), per accelerator."""
    path = report_dir / PRECISION_FILE
    history = json.loads(path.read_text()) if path.is_file() else {}
    for acc, h in summary.get("step_overhead", {}).items():
        low, high = h["ratio_ci"]
        entry = {"date": raw["machine"]["date"], "machine": raw["machine"]["cpu"], "n": h["n"], "unit": h["unit"],
                 "half_width_pct": round(100 * (high - low) / 2 / h["ratio"], 2),
                 "ratios": {arm: round(r["ratio"], 4) for arm, r in h.get("arms", {}).items() if r}}
        runs = history.setdefault(acc, [])
        if entry["date"] not in {r["date"] for r in runs}:
            runs.append(entry)
    return history


def partial_path(report_dir: Path) -> Path:
    """Where a running suite keeps the records measured so far (next to the report, hidden)."""
    return report_dir.parent / f".{report_dir.name}.partial.json"


def render_partial(report_dir: Path) -> Path:
    """The report of a suite that was cut off, from the records it saved; what did not run is 'not measured'."""
    from benchmarks.summary import summarize

    raw = json.loads(partial_path(report_dir).read_text())
    raw["profile_notes"] += " -- CUT OFF before the plan finished: only the runs listed were measured"
    return write_report(raw, summarize(raw), report_dir)


# what every record the suite writes holds at its top (raw for benchmark.json, the whole file when partial)
RAW_KEYS = {"profile": str, "profile_notes": str, "machine": dict, "lines_of_code": dict, "accelerators": dict}


def main(argv: list[str] | None = None) -> None:
    """`python -m benchmarks.report [--partial] FOLDER ...`: re-render reports without training."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m benchmarks.report",
                                     description="Re-render reports from their benchmark.json, without training.")
    parser.add_argument("folders", nargs="+", type=Path, help="report folders, e.g. reports/seed")
    parser.add_argument("--partial", action="store_true",
                        help="render a cut-off suite from its saved records (reports/.NAME.partial.json)")
    args = parser.parse_args(argv)
    for folder in args.folders:  # every source read before any report is rewritten
        source = partial_path(folder) if args.partial else folder / "benchmark.json"
        if not source.is_file():
            parser.error(f"{folder}: no {source.name} to render from")
        try:
            record = json.loads(source.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            parser.error(f"{source}: not a benchmark record ({err})")
        raw = record if args.partial else record.get("raw") if isinstance(record, dict) else None
        missing = [key for key, kind in RAW_KEYS.items() if not isinstance(raw, dict) or not isinstance(raw.get(key), kind)]
        if missing:
            parser.error(f"{source}: not a benchmark record ({'raw' if not args.partial else 'its'} "
                         f"{', '.join(repr(k) for k in missing)} missing or of another type)")
    for folder in args.folders:
        print((render_partial if args.partial else rerender)(folder) / "comparison.md")


if __name__ == "__main__":
    main()
