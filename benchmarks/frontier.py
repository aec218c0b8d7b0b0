"""The real-data recipe frontier: settings ranked by validation macro-F1; the test split read for the chosen one only.

`python -m benchmarks.frontier [--settings NAME ...] [--sides plain,lightning] [--seeds 42 43 ...] [--jobs N]
[--choose]` trains each setting, once per seed and side, on the WM-811K file at $WM811K_PATH through the sides'
real CLIs (fresh processes, N at a time), scores each run's best checkpoint on its own natural-mix validation split
(`evaluate --split val`) and merges the records into reports/real/frontier.json. With --choose, the setting with the
best mean validation macro-F1 over all its saved runs is then scored on the test split, once per run
(`evaluate --split test`). With --tta each saved run of the settings named is also scored with test-time
augmentation (`evaluate --tta`: the same checkpoint, no retraining), recorded as the setting `<name>, TTA`, which is
ranked and chosen like any other. frontier.png and frontier.md are redrawn from every record there.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402
from tabulate import tabulate  # noqa: E402

from benchmarks.profiles import REAL_DATA_ENV  # noqa: E402
from benchmarks.runner import MODULES, ROOT, SIDE_NAMES, SIDES, RunRecord, run_training, train_command  # noqa: E402
from benchmarks.suite import machine_info  # noqa: E402
from shared.runtime import atomic_write_text  # noqa: E402

# every setting: the training split capped at 3,000 maps per class, flips/rotations, batch 64 (--seeds: 42)
_BASE = ("--samples-per-class", "3000", "--batch-size", "64", "--augment")
_COSINE = ("--lr-schedule", "cosine", "--patience", "100", "--channels-last")
_SOFT_WEIGHTS = ("--class-weights", "--class-weight-power", "0.5")
_SOFT_SAMPLER = ("--sampler", "balanced", "--sampler-power", "0.5")
TTA_SUFFIX = ", TTA"  # a setting's runs scored with `evaluate --tta`: the same checkpoints, scored again
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
    # levers for Scratch and Loc (thin and small patterns), to measure on a GPU host: finer maps, and label
    # smoothing beside the soft weights; each against the 48px, cosine 30 epochs row
    "56px, class weights ** 0.5, cosine 30 epochs": ("--image-size", "56", "--epochs", "30", *_COSINE,
                                                     *_SOFT_WEIGHTS),
    "64px, class weights ** 0.5, cosine 30 epochs": ("--image-size", "64", "--epochs", "30", *_COSINE,
                                                     *_SOFT_WEIGHTS),
    "48px, class weights ** 0.5, label smoothing 0.05, cosine 30 epochs": (
        "--image-size", "48", "--epochs", "30", *_COSINE, *_SOFT_WEIGHTS, "--label-smoothing", "0.05"),
    # rare classes seen more often instead of weighing more (or both), against the 56px, cosine 30 epochs row;
    # --tta scores any of these with the 8-view mean as well
    "56px, balanced sampler ** 0.5, cosine 30 epochs": ("--image-size", "56", "--epochs", "30", *_COSINE,
                                                        *_SOFT_SAMPLER),
    # the same lever at 48 px, where a 2-core CPU trains 30 epochs in ~7.5 min (56 px: ~10, the budget's edge)
    "48px, balanced sampler ** 0.5, cosine 30 epochs": ("--image-size", "48", "--epochs", "30", *_COSINE,
                                                        *_SOFT_SAMPLER),
    "56px, balanced sampler, cosine 30 epochs": ("--image-size", "56", "--epochs", "30", *_COSINE,
                                                 "--sampler", "balanced"),
    "56px, class weights ** 0.5, balanced sampler ** 0.5, cosine 30 epochs": (
        "--image-size", "56", "--epochs", "30", *_COSINE, *_SOFT_WEIGHTS, *_SOFT_SAMPLER),
}
REPORT_DIR = Path("reports/real")
DEFAULT_SEED = 42


def run_setting(name: str, side: str, data: str, run_dir: Path, seed: int = DEFAULT_SEED,
                accelerator: str = "cpu") -> dict:
    """One training process of a setting, then its best checkpoint on the run's own validation split."""
    print(f"{name} ({side}, seed {seed}) ...", flush=True)
    flags = [*_BASE, *SETTINGS[name], "--accelerator", accelerator, "--seed", str(seed), "--data", data]
    record = RunRecord(side, "frontier", name, accelerator, 0, seed, train_command(side, flags))
    run_training(record, run_dir, timeout_s=3600)
    if not record.ok:
        raise SystemExit(f"{name} ({side}, seed {seed}): {record.error}")
    m = record.metrics  # its "test" entry, written by the training process, is not read: test waits for --choose
    best = sorted(run_dir.glob(f"checkpoints/epoch={m['best_epoch']}-*"))
    if not best:
        raise SystemExit(f"{name} ({side}, seed {seed}): no best checkpoint in {run_dir / 'checkpoints'}")
    return {"setting": name, "side": side, "seed": seed, "flags": flags, "accelerator": accelerator,
            "fit_seconds": m["fit_seconds"], "train_cpu_seconds": sum(e["train_cpu_seconds"] for e in m["history"]),
            "loadavg_1min_after": os.getloadavg()[0], "wall_seconds": record.wall_seconds,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "epochs_run": m["epochs_run"],
            "best_epoch": m["best_epoch"], "best_checkpoint": str(best[0]), "class_mix": m["test_class_mix"],
            "val": evaluate_split(side, best[0], data, "val", accelerator),
            "final_weights_sha256": m["final_weights_sha256"], "machine": machine_info()}


def evaluate_split(side: str, checkpoint: Path, data: str, split: str, accelerator: str, tta: bool = False) -> dict:
    """The side's evaluate command on one split of the checkpoint's run: macro-F1, its interval, per-class F1."""
    out = checkpoint.parent.parent / f"evaluate-{split}{'-tta' if tta else ''}"
    command = [sys.executable, "-m", f"{MODULES[side]}.evaluate", "--checkpoint", str(checkpoint), "--data", data,
               "--split", split, "--accelerator", accelerator, "--output-dir", str(out), *(["--tta"] if tta else [])]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["(no output)"]
        raise SystemExit(f"{checkpoint} on its {split} split: exit {done.returncode}: {lines[-1]}")
    scored = json.loads((out / "metrics.json").read_text())["test"]  # evaluate names whatever it scored "test"
    return {"f1_macro": scored["f1_macro"], "f1_macro_bootstrap_95": scored["f1_macro_bootstrap_95"],
            "accuracy": scored["accuracy"], "per_class_f1": {k: v["f1"] for k, v in scored["per_class"].items()},
            "per_class_support": {k: v["support"] for k, v in scored["per_class"].items()}}


def chosen_setting(records: list[dict]) -> str | None:
    """The setting with the best mean validation macro-F1 over its runs (every seed, both sides)."""
    scores: dict[str, list[float]] = {}
    for r in records:
        scores.setdefault(r["setting"], []).append(r["val"]["f1_macro"])
    return max(scores, key=lambda name: statistics.mean(scores[name]), default=None)


def score_chosen(records: list[dict], data: str, save) -> str | None:
    """The chosen setting's runs on their test splits, each read once (a run scored before keeps its figures)."""
    name = chosen_setting(records)
    for r in records:
        if r["setting"] == name and "test" not in r:
            checkpoint = Path(r["best_checkpoint"])
            if not checkpoint.is_file():
                raise SystemExit(f"{name} ({r['side']}, seed {r['seed']}): {checkpoint} is gone; train it again")
            print(f"{name} ({r['side']}, seed {r['seed']}): test split ...", flush=True)
            r["test"] = evaluate_split(r["side"], checkpoint, data, "test", r["accelerator"], tta=r.get("tta", False))
            save(records)
    return name


def add_tta_records(records: list[dict], settings: list[str], data: str, save) -> None:
    """Each saved run of `settings` scored on validation with --tta, as a record of the setting `<name>, TTA`
    (its training figures the run's own); a run scored so before keeps its record."""
    done = {(r["setting"], r["side"], r["seed"]) for r in records}
    for r in list(records):
        key = (r["setting"] + TTA_SUFFIX, r["side"], r["seed"])
        if r["setting"] not in settings or r.get("tta") or key in done:
            continue
        checkpoint = Path(r["best_checkpoint"])
        if not checkpoint.is_file():
            raise SystemExit(f"{r['setting']} ({r['side']}, seed {r['seed']}): {checkpoint} is gone; train it again")
        print(f"{key[0]} ({r['side']}, seed {r['seed']}): validation split ...", flush=True)
        scored = {k: v for k, v in r.items() if k != "test"}  # the test split waits for a choice, as always
        records.append({**scored, "setting": key[0], "tta": True,
                        "val": evaluate_split(r["side"], checkpoint, data, "val", r["accelerator"], tta=True)})
        save(records)


def train_all(runs: list[tuple[str, int, str]], data: str, work_dir: Path, jobs: int, accelerator: str,
              add) -> None:
    """Each (setting, seed, side) once, `jobs` at a time; add(record) as each ends; the first failure stops the
    queue (runs already started finish and are kept) and is raised once they have; Ctrl-C stops it too."""
    first = len(list(work_dir.glob("*")))  # run folders are numbered here, before any starts: no two share one
    failed = threading.Event()  # set by the failing worker itself, so no queued run starts after it

    def attempt(name: str, seed: int, side: str, run_dir: Path) -> dict | None:
        if failed.is_set():
            return None
        try:
            return run_setting(name, side, data, run_dir, seed, accelerator)
        except SystemExit:
            failed.set()
            raise

    failure = None
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(attempt, name, seed, side, (work_dir / f"{first + i}-{side}").resolve())
                   for i, (name, seed, side) in enumerate(runs)]
        try:
            for future in as_completed(futures):
                try:
                    new = future.result()
                except SystemExit as err:
                    failure = failure or err
                    continue
                if new is not None:
                    print(f"  {new['setting']} ({new['side']}, seed {new['seed']}): {new['fit_seconds'] / 60:.1f} "
                          f"min, validation macro-F1 {new['val']['f1_macro']:.3f}", flush=True)
                    add(new)
        except BaseException:  # Ctrl-C: nothing queued starts; the pool waits for the runs in flight
            failed.set()
            raise
    if failure is not None:
        raise failure


def plot(records: list[dict], chosen: str | None, path: Path) -> None:
    """Validation macro-F1 of every run against its training minutes; the chosen setting's test F1 beside it."""
    sns.set_theme(style="whitegrid")
    fig, ax = plt.subplots(figsize=(8, 5))
    for side, marker in zip(SIDES, "os"):
        mine = [r for r in records if r["side"] == side]
        ax.scatter([r["fit_seconds"] / 60 for r in mine], [r["val"]["f1_macro"] for r in mine], marker=marker,
                   s=60, label=f"{SIDE_NAMES[side]}: validation", alpha=0.8)
    tested = [r for r in records if r["setting"] == chosen and "test" in r]
    if tested:
        ax.scatter([r["fit_seconds"] / 60 for r in tested], [r["test"]["f1_macro"] for r in tested], marker="*",
                   s=140, color="black", label="chosen setting: test")
    for r in {r["setting"]: r for r in records}.values():  # one label per setting
        ax.annotate(r["setting"], (r["fit_seconds"] / 60, r["val"]["f1_macro"]), fontsize=7, xytext=(4, -10),
                    textcoords="offset points")
    ax.axhline(0.90, color="grey", linestyle="--", linewidth=1, label="goal 0.90")
    ax.set(xlabel="training minutes (wall time of the fit phase)", ylabel="macro-F1 (natural class mix)",
           title="Real WM-811K subset: validation macro-F1 against training time")
    ax.legend(loc="lower right")
    ax.margins(x=0.25)  # room for the labels of the rightmost points
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def render(records: list[dict], folder: Path) -> None:
    """frontier.png and frontier.md (one row per run, then the seeds and the chosen setting) from every record."""
    chosen = chosen_setting(records)
    plot(records, chosen, folder / "frontier.png")
    classes = list(records[0]["val"]["per_class_f1"]) if records else []
    rows = [[r["setting"], SIDE_NAMES[r["side"]], r["seed"], f"{r['fit_seconds'] / 60:.1f}",
             f"{r['train_cpu_seconds'] / 60:.1f}", f"{r['loadavg_1min_after']:.1f}", r["epochs_run"],
             f"{r['val']['f1_macro']:.3f}", f"{r['val']['accuracy']:.3f}",
             *(f"{r['val']['per_class_f1'][c]:.2f}" for c in classes),
             f"{r['test']['f1_macro']:.3f}" if r["setting"] == chosen and "test" in r else "-"] for r in records]
    machines = sorted({f"{r['machine']['cpu']} ({r['machine']['cores']} cores, OMP_NUM_THREADS="
                       f"{r.get('omp_num_threads') or 'unset'}), torch {r['machine']['torch']}, {r['accelerator']}"
                       + (f" ({r['machine']['gpu']}, {r.get('jobs', 1)} runs at once)" if r["machine"].get("gpu") else "")
                       for r in records})
    text = ["# Real-data recipe frontier", "",
            "Generated by `python -m benchmarks.frontier`: each row is one training process on the WM-811K subset "
            "(training split capped at 3,000 maps per class, flips and rotations, batch 64; the seed draws the "
            "split, the initial weights and the batch order; the setting says whether the loss is class-weighted and how the maps are drawn). "
            "Settings are ranked by the **validation** macro-F1 of each run's best checkpoint, on the run's own "
            "validation split with the file's natural class mix; the **test** split is read only for the setting "
            "chosen that way (`--choose`), so `test macro-F1` is empty on every other row. Measured on: "
            + "; ".join(machines) + ".", "",
            "`fit min` is the training phase's wall time, `CPU min` its process CPU time (training loops only), "
            "`load` the 1-minute load average when the run ended: above the core count, other work shared the "
            "machine and the times are inflated (the F1 figures are not affected). Per-class columns: validation F1."
            + (f" {shared} runs trained beside others (--jobs > 1): their minutes are those of a shared machine."
               if (shared := sum(r.get("jobs", 1) > 1 and not r.get("tta") for r in records)) else "")
            + (f" A setting ending '{TTA_SUFFIX[2:]}' holds the runs of the setting it names scored again with "
               "test-time augmentation (`evaluate --tta`: class probabilities averaged over each map's 8 flips and "
               "90-degree rotations; same checkpoints, so the same minutes)." if any(r.get("tta") for r in records)
               else ""), "",
            tabulate(rows, headers=["setting", "side", "seed", "fit min", "CPU min", "load", "epochs",
                                    "val macro-F1", "val accuracy", *classes, "test macro-F1"],
                     tablefmt="github", disable_numparse=True), "",
            *over_seeds(records), *chosen_section(records, chosen)]
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


def _jobs(text: str) -> int:
    """A --jobs value: a whole number of trainings at once, at least one."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return int(text)


def _spread(values: list[float]) -> tuple[str, str]:
    return f"{statistics.mean(values):.3f}", f"{min(values):.3f}-{max(values):.3f}"


def over_seeds(records: list[dict]) -> list[str]:
    """Per setting and side trained with several seeds: mean validation macro-F1, its range and the mean minutes."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["setting"], r["side"]), []).append(r)
    rows = [[setting, SIDE_NAMES[side], len(rs), *_spread([r["val"]["f1_macro"] for r in rs]),
             f"{statistics.mean(r['fit_seconds'] for r in rs) / 60:.1f}", ", ".join(str(r["seed"]) for r in rs)]
            for (setting, side), rs in groups.items() if len(rs) > 1]
    if not rows:
        return []
    return ["Settings trained with several seeds (each seed its own split, so the range holds the validation "
            "split's sampling too; a range of a few runs, not a confidence interval):", "",
            tabulate(rows, headers=["setting", "side", "runs", "mean val macro-F1", "range", "mean fit min", "seeds"],
                     tablefmt="github", disable_numparse=True), ""]


def chosen_section(records: list[dict], chosen: str | None) -> list[str]:
    """The chosen setting's test figures: per side, mean and range over seeds, each run's bootstrap interval, and
    per-class test F1 beside its support."""
    tested = [r for r in records if r["setting"] == chosen and "test" in r]
    earlier = sorted({r["setting"] for r in records if r["setting"] != chosen and "test" in r})
    mean_val = statistics.mean(r["val"]["f1_macro"] for r in records if r["setting"] == chosen) if chosen else 0
    text = [f"## Chosen on validation: {chosen}", "",
            f"The best mean validation macro-F1 ({mean_val:.3f} over "
            f"{sum(r['setting'] == chosen for r in records)} runs). "
            + ("Its test split, read once per run after the choice:" if tested else
               "Its test split has not been read yet: run `python -m benchmarks.frontier --render-only --choose`."),
            ""] if chosen else []
    if tested:
        rows = [[SIDE_NAMES[side], len(rs), *_spread([r["test"]["f1_macro"] for r in rs]),
                 "; ".join(f"{r['seed']}: {r['test']['f1_macro']:.3f} ({_interval(r)})" for r in rs)]
                for side in SIDES if (rs := [r for r in tested if r["side"] == side])]
        text += [tabulate(rows, headers=["side", "runs", "mean test macro-F1", "range over seeds",
                                         "per seed: macro-F1 (bootstrap 95 % over its test maps, model fixed)"],
                          tablefmt="github", disable_numparse=True), "", *per_class_test(tested)]
    if earlier:
        text += [f"The test split was also read, by an earlier --choose, for: {'; '.join(earlier)}. Those figures "
                 "stay in frontier.json and are not shown: a choice is made on validation alone.", ""]
    return text


def _interval(record: dict) -> str:
    low_high = record["test"]["f1_macro_bootstrap_95"]
    return f"{low_high[0]:.3f}-{low_high[1]:.3f}" if low_high else "-"


def per_class_test(tested: list[dict]) -> list[str]:
    """Per class and side: mean test F1 over seeds, its range, and the test maps of that class in each run."""
    rows = []
    for side in SIDES:
        rs = [r for r in tested if r["side"] == side]
        for c in rs[0]["test"]["per_class_f1"] if rs else []:
            rows.append([c, SIDE_NAMES[side], *_spread([r["test"]["per_class_f1"][c] for r in rs]),
                         ", ".join(str(r["test"]["per_class_support"][c]) for r in rs)])
    return ["Per class, on the test split (support: the class's test maps in each run, seeds in the order above):",
            "", tabulate(rows, headers=["class", "side", "mean test F1", "range", "support"], tablefmt="github",
                         disable_numparse=True), ""]


def load_records(path: Path) -> list[dict]:
    """The saved records; ValueError for a file that is not one, or one written before validation ranking."""
    try:
        records = json.loads(path.read_text()) if path.is_file() else []
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not a frontier record file ({err})") from None
    old = sum("val" not in r for r in records)
    if old:
        raise ValueError(f"{path}: {old} records from before settings were ranked on validation (test macro-F1 "
                         f"only); move the file away to start a fresh frontier")
    return records


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.frontier", description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--sides", default="plain,lightning", help="comma-separated: plain, lightning")
    parser.add_argument("--seeds", nargs="+", type=_seed, default=[DEFAULT_SEED],
                        help=f"train each setting once per seed, each in [0, 2**32) (default {DEFAULT_SEED})")
    parser.add_argument("--jobs", type=_jobs, default=1,
                        help="trainings at once (default 1); on a CPU each takes every core unless OMP_NUM_THREADS "
                             "says otherwise (set it to cores / N); on a GPU host, several runs share the card")
    parser.add_argument("--accelerator", choices=("cpu", "gpu"), default="cpu", help="where each run trains")
    parser.add_argument("--choose", action="store_true",
                        help="after training, score the setting with the best mean validation macro-F1 (all its "
                             "saved runs) on its test split, once per run")
    parser.add_argument("--tta", action="store_true",
                        help="also score each saved run of --settings on validation with test-time augmentation "
                             f"(evaluate --tta, no retraining), as the setting '<name>{TTA_SUFFIX}'")
    parser.add_argument("--report-dir", type=Path, default=REPORT_DIR)
    parser.add_argument("--render-only", action="store_true",
                        help="train nothing; redraw from frontier.json (with --choose: score the chosen setting first)")
    args = parser.parse_args(argv)
    data = os.environ.get(REAL_DATA_ENV)
    sides = list(dict.fromkeys(args.sides.split(",")))  # a side named twice trains once
    if (not args.render_only or args.choose or args.tta) and (not data or not Path(data).is_file()):
        parser.error(f"set {REAL_DATA_ENV} to an LSWMD-format pickle (now {data!r})")
    if any(side not in SIDES for side in sides):
        parser.error(f"--sides {args.sides}: each must be one of {', '.join(SIDES)}")
    path = args.report_dir / "frontier.json"
    try:
        records = load_records(path)
    except ValueError as err:
        parser.error(str(err))
    if args.render_only and not records:
        parser.error(f"--render-only: no records in {path}")
    work_dir = args.report_dir.parent / ".frontier-runs"
    work_dir.mkdir(parents=True, exist_ok=True)
    runs = [(n, seed, side) for n in dict.fromkeys(args.settings) for seed in dict.fromkeys(args.seeds)
            for side in sides]

    def save(kept: list[dict]) -> None:
        atomic_write_text(path, json.dumps(kept, indent=1))  # after every run: a kill loses the runs in flight

    def add(new: dict) -> None:
        new["jobs"] = args.jobs  # runs in flight together: each one's minutes are a shared machine's
        # a run trained again replaces its record and the TTA scores of the checkpoint it replaced
        stale = {(new["setting"] + suffix, new["side"], new["seed"]) for suffix in ("", TTA_SUFFIX)}
        records[:] = [r for r in records if (r["setting"], r["side"], r["seed"]) not in stale] + [new]
        save(records)

    try:
        train_all([] if args.render_only else runs, data, work_dir, args.jobs, args.accelerator, add)
        if args.tta:
            add_tta_records(records, args.settings, data, save)
        if args.choose and records:
            print(f"chosen on validation: {score_chosen(records, data, save)}", flush=True)
    finally:  # a failed run still leaves the table and plot of every record saved so far
        if records:
            args.report_dir.mkdir(parents=True, exist_ok=True)
            render(records, args.report_dir)
            print(f"wrote {args.report_dir / 'frontier.md'} and frontier.png", file=sys.stderr)


if __name__ == "__main__":
    main()
