"""The real-data recipe frontier: test macro-F1 on the natural class mix against training minutes, per setting.

`python -m benchmarks.frontier [--settings NAME ...] [--sides plain,lightning] [--seeds 42 43 ...]` trains each
setting, once per seed, on the WM-811K file at $WM811K_PATH through the sides' real CLIs (fresh processes, one at
a time) and merges the records into reports/real/frontier.json, then redraws frontier.png and frontier.md from
every record there.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402
from tabulate import tabulate  # noqa: E402

from benchmarks.profiles import REAL_DATA_ENV  # noqa: E402
from benchmarks.runner import SIDE_NAMES, SIDES, RunRecord, run_training, train_command  # noqa: E402
from benchmarks.suite import machine_info  # noqa: E402
from shared.runtime import atomic_write_text  # noqa: E402

# every setting: the training split capped at 3,000 maps per class, flips/rotations, batch 64 (--seeds: 42)
_BASE = ("--samples-per-class", "3000", "--batch-size", "64", "--augment", "--accelerator", "cpu")
_COSINE = ("--lr-schedule", "cosine", "--patience", "100", "--channels-last")
_SOFT_WEIGHTS = ("--class-weights", "--class-weight-power", "0.5")
SETTINGS: dict[str, tuple[str, ...]] = {
    # the real profile before this frontier: on the natural-mix test split the class weights, on top of the cap,
    # made 'none' maps read as Scratch (153 of 2,700; Scratch precision 0.22, recall 0.72)
    "32px, class weights, constant lr, 25 epochs": ("--image-size", "32", "--epochs", "25", "--patience", "5",
                                                    "--class-weights"),
    "32px, class weights, cosine 20 epochs": ("--image-size", "32", "--epochs", "20", *_COSINE, "--class-weights"),
    "32px, cosine 20 epochs": ("--image-size", "32", "--epochs", "20", *_COSINE),
    "48px, cosine 12 epochs": ("--image-size", "48", "--epochs", "12", *_COSINE),
    "64px, cosine 8 epochs": ("--image-size", "64", "--epochs", "8", *_COSINE),
    # the square root of the balanced weights: between no weights (Scratch recall 0.05) and balanced ones
    # (Scratch precision 0.22)
    "32px, class weights ** 0.5, cosine 20 epochs": ("--image-size", "32", "--epochs", "20", *_COSINE,
                                                     *_SOFT_WEIGHTS),
    "48px, class weights ** 0.5, cosine 20 epochs": ("--image-size", "48", "--epochs", "20", *_COSINE,
                                                     *_SOFT_WEIGHTS),
    "48px, class weights ** 0.5, cosine 30 epochs": ("--image-size", "48", "--epochs", "30", *_COSINE,
                                                     *_SOFT_WEIGHTS),
    "48px, class weights ** 0.5, cosine 36 epochs": ("--image-size", "48", "--epochs", "36", *_COSINE,
                                                     *_SOFT_WEIGHTS),
}
REPORT_DIR = Path("reports/real")


DEFAULT_SEED = 42  # records written before --seeds existed were all trained with it


def run_setting(name: str, side: str, data: str, work_dir: Path, seed: int = DEFAULT_SEED) -> dict:
    """One training process of a setting; its time and natural-mix test metrics."""
    flags = [*_BASE, *SETTINGS[name], "--seed", str(seed), "--data", data]
    record = RunRecord(side, "frontier", name, "cpu", 0, seed, train_command(side, flags))
    run_training(record, work_dir / f"{len(list(work_dir.glob('*')))}-{side}", timeout_s=3600)
    if not record.ok:
        raise SystemExit(f"{name} ({side}, seed {seed}): {record.error}")
    m = record.metrics
    return {"setting": name, "side": side, "seed": seed, "flags": flags, "fit_seconds": m["fit_seconds"],
            "train_cpu_seconds": sum(e["train_cpu_seconds"] for e in m["history"]),
            "loadavg_1min_after": os.getloadavg()[0], "wall_seconds": record.wall_seconds,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "epochs_run": m["epochs_run"], "f1_macro": m["test"]["f1_macro"],
            "accuracy": m["test"]["accuracy"], "test_class_mix": m["test_class_mix"],
            "per_class_f1": {k: v["f1"] for k, v in m["test"]["per_class"].items()},
            "final_weights_sha256": m["final_weights_sha256"], "machine": machine_info()}


def render(records: list[dict], folder: Path) -> None:
    """frontier.png (macro-F1 vs training minutes) and frontier.md (one row per record) from every record."""
    sns.set_theme(style="whitegrid")
    fig, ax = plt.subplots(figsize=(8, 5))
    for side, marker in zip(SIDES, "os"):
        mine = [r for r in records if r["side"] == side]
        ax.scatter([r["fit_seconds"] / 60 for r in mine], [r["f1_macro"] for r in mine], marker=marker, s=60,
                   label=SIDE_NAMES[side], alpha=0.8)
    for r in {r["setting"]: r for r in records if r["side"] == "plain"}.values():  # one label per setting
        ax.annotate(r["setting"], (r["fit_seconds"] / 60, r["f1_macro"]), fontsize=7, xytext=(4, -10),
                    textcoords="offset points")
    ax.axhline(0.90, color="grey", linestyle="--", linewidth=1, label="goal 0.90")
    ax.set(xlabel="training minutes (wall time of the fit phase)", ylabel="test macro-F1 (natural class mix)",
           title="Real WM-811K subset: macro-F1 against training time")
    ax.legend(loc="upper right")
    ax.margins(x=0.25)  # room for the labels of the rightmost points
    fig.tight_layout()
    fig.savefig(folder / "frontier.png", dpi=120)
    plt.close(fig)
    classes = list(records[0]["per_class_f1"]) if records else []
    rows = [[r["setting"], SIDE_NAMES[r["side"]], seed_of(r), f"{r['fit_seconds'] / 60:.1f}", f"{r['train_cpu_seconds'] / 60:.1f}",
             f"{r['loadavg_1min_after']:.1f}", r["epochs_run"], f"{r['f1_macro']:.3f}", f"{r['accuracy']:.3f}",
             *(f"{r['per_class_f1'][c]:.2f}" for c in classes)] for r in records]
    machines = sorted({f"{r['machine']['cpu']} ({r['machine']['cores']} cores, OMP_NUM_THREADS="
                       f"{r.get('omp_num_threads') or 'unset'}), torch {r['machine']['torch']}" for r in records})
    text = ["# Real-data recipe frontier", "",
            "Generated by `python -m benchmarks.frontier`: each row is one training process on the WM-811K subset "
            "(training split capped at 3,000 maps per class, flips and rotations, batch 64; the seed draws the "
            "split, the initial weights and the batch order; the setting "
            "says whether the loss is class-weighted), scored on its test split with the file's natural class mix. Measured on: "
            + "; ".join(machines) + ".", "",
            "`fit min` is the training phase's wall time, `CPU min` its process CPU time (training loops only), "
            "`load` the 1-minute load average when the run ended: above the core count, other work shared the "
            "machine and the times are inflated (the F1 figures are not affected).", "",
            tabulate(rows, headers=["setting", "side", "seed", "fit min", "CPU min", "load", "epochs", "macro-F1",
                                    "accuracy", *classes], tablefmt="github", disable_numparse=True), "",
            *over_seeds(records)]
    atomic_write_text(folder / "frontier.md", "\n".join(text))


def _seed(text: str) -> int:
    """A --seeds value: what the training CLIs accept, checked before anything trains."""
    try:
        seed = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= seed < 2**32:
        raise argparse.ArgumentTypeError(f"{seed} is not in [0, 2**32)")
    return seed


def seed_of(record: dict) -> int:
    return record.get("seed", DEFAULT_SEED)


def over_seeds(records: list[dict]) -> list[str]:
    """Per setting and side trained with several seeds: mean macro-F1, its range and the mean minutes."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["setting"], r["side"]), []).append(r)
    rows = [[setting, SIDE_NAMES[side], len(rs), f"{statistics.mean(r['f1_macro'] for r in rs):.3f}",
             f"{min(r['f1_macro'] for r in rs):.3f}-{max(r['f1_macro'] for r in rs):.3f}",
             f"{statistics.mean(r['fit_seconds'] for r in rs) / 60:.1f}",
             ", ".join(str(seed_of(r)) for r in rs)]
            for (setting, side), rs in groups.items() if len(rs) > 1]
    if not rows:
        return []
    return ["Settings trained with several seeds (each seed its own split, so the range holds the test split's "
            "sampling too; a range of a few runs, not a confidence interval):", "",
            tabulate(rows, headers=["setting", "side", "runs", "mean macro-F1", "range", "mean fit min", "seeds"],
                     tablefmt="github", disable_numparse=True), ""]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.frontier", description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--sides", default="plain,lightning", help="comma-separated: plain, lightning")
    parser.add_argument("--seeds", nargs="+", type=_seed, default=[DEFAULT_SEED],
                        help=f"train each setting once per seed, each in [0, 2**32) (default {DEFAULT_SEED})")
    parser.add_argument("--report-dir", type=Path, default=REPORT_DIR)
    parser.add_argument("--render-only", action="store_true", help="redraw from frontier.json, train nothing")
    args = parser.parse_args(argv)
    data = os.environ.get(REAL_DATA_ENV)
    sides = list(dict.fromkeys(args.sides.split(",")))  # a side named twice trains once
    if not args.render_only and (not data or not Path(data).is_file()):
        parser.error(f"set {REAL_DATA_ENV} to an LSWMD-format pickle (now {data!r})")
    if any(side not in SIDES for side in sides):
        parser.error(f"--sides {args.sides}: each must be one of {', '.join(SIDES)}")
    path = args.report_dir / "frontier.json"
    try:
        records = json.loads(path.read_text()) if path.is_file() else []
    except json.JSONDecodeError as err:
        parser.error(f"{path}: not a frontier record file ({err})")
    if args.render_only and not records:
        parser.error(f"--render-only: no records in {path}")
    work_dir = args.report_dir.parent / ".frontier-runs"
    work_dir.mkdir(parents=True, exist_ok=True)
    runs = [(n, seed) for n in dict.fromkeys(args.settings) for seed in dict.fromkeys(args.seeds)]
    try:
        for name, seed in [] if args.render_only else runs:
            for side in sides:
                print(f"{name} ({side}, seed {seed}) ...", flush=True)
                new = run_setting(name, side, data, work_dir, seed)
                print(f"  {new['fit_seconds'] / 60:.1f} min, macro-F1 {new['f1_macro']:.3f}", flush=True)
                records = [r for r in records if (r["setting"], r["side"], seed_of(r)) != (name, side, seed)] + [new]
                atomic_write_text(path, json.dumps(records, indent=1))  # saved after every run: a kill loses one
    finally:  # a failed run still leaves the table and plot of every record saved so far
        if records:
            args.report_dir.mkdir(parents=True, exist_ok=True)
            render(records, args.report_dir)
            print(f"wrote {args.report_dir / 'frontier.md'} and frontier.png", file=sys.stderr)


if __name__ == "__main__":
    main()
