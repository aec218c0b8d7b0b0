"""The report's answer to "what does Lightning cost as people run it": the headline, the like-for-like table, the
three arms per setting, the price list, the floor and the GPU checks."""

from __future__ import annotations

from benchmarks.formatting import ACC_NAMES, NOT_MEASURED, _table, fmt, fmt_interval, fmt_ratio
from benchmarks.loc import role
from benchmarks.summary import ARM_PAIRS, FEATURE_SWITCHES, PRICE_SIDES, per_accelerator

ARM_NAMES = {"plain": "plain PyTorch", "lightning": "Lightning matched", "lightning defaults": "Lightning defaults"}
# what each comparison of a step setting is: (label, arm a, arm b); the headline's pairs, then the A/A control
COMPARISONS = (*((f"{name}: {a.replace('lightning', 'Lightning')} / {b}", a, b) for name, a, b in ARM_PAIRS),
               ("A/A control: plain / plain", "plain A/A", "plain"))
# per feature, what each side does with it on (the code of this commit): the like-for-like table
LIKE_FOR_LIKE = (
    ("progress bar", "tqdm redrawn every 10 steps and at an epoch's end; the step loss read on the host only then",
     "`TQDMProgressBar(refresh_rate=10)` subclass showing the step loss, read only at a redraw; no validation or "
     "test bar; each update redraws twice (count, then postfix)",
     "`TQDMProgressBar()`: redrawn at every step, twice; validation and test bars too; every prog-bar metric "
     "converted to a number each step"),
    ("TensorBoard", "`add_scalar` of the step loss every 50 steps (one host read); 4 epoch metrics and the learning "
     "rate once per epoch", "the same points, via `self.log` only at the steps the logger writes; Lightning adds "
     "an `epoch` scalar beside each write", "`self.log` of the step loss and of 2 epoch metrics in every step "
     "(the logger writes every 50)"),
    ("epoch metrics", "(loss x n, correct) summed on the device per step; one host read per stage and epoch",
     "the same sums in the LightningModule, reduced and logged once per epoch", "`self.log(on_epoch=True)` per step "
     "in training and validation; Lightning accumulates and reduces them"),
    ("checkpoints", "best-k + last written once per epoch by hand", "`ModelCheckpoint`, once per epoch",
     "the same"),
    ("early stopping", "one comparison per epoch", "`EarlyStopping`, once per epoch", "the same"),
)


def answer_first(raw: dict, summary: dict) -> list[str]:
    """Five lines: code removed, cost per step as people run it (three arms), import time, identical models."""
    lines = ["## The answer", code_line(raw["lines_of_code"])]
    for acc, s in per_accelerator(summary).items():
        for name in ("step", *(n for n in (s.get("blocks") or {}).get("settings", {}) if n.startswith("batch "))):
            line = cost_line(acc, name, s)
            if line:
                lines.append(line)
    fixed = (summary.get("step_overhead", {}).get("cpu") or {}).get("fixed_overhead_us")
    if fixed:
        lo, hi = fixed["difference_ci"]
        robust = fixed.get("robust")
        trimmed = (f"; 20 % trimmed mean of each process's rounds {robust['mean']:.0f} µs ({robust['low']:.0f} to "
                   f"{robust['high']:.0f})" if robust else "")
        lines.append(f"- **Fixed cost** of the Lightning loop (barebones, near-zero-cost CPU step): **+{fixed['difference']:.0f} "
                     f"µs per step** (95% CI {lo:.0f} to {hi:.0f}{trimmed}), a factor 1 + {fixed['difference']:.0f}/T "
                     "on a step of T µs; the µs figure moves with the machine's speed.")
    for acc, s in per_accelerator(summary).items():
        imports = s["runtime"]["import_seconds"]["sides"]
        if imports["plain"] and imports["lightning"]:
            lines.append(f"- **Import** of the training module ({ACC_NAMES[acc]} host): plain {imports['plain']['median']:.1f} s, "
                         f"Lightning {imports['lightning']['median']:.1f} s (median, n={imports['plain']['n']}).")
    for acc, s in per_accelerator(summary).items():
        lines += [line for line in (fastest_line(acc, s), parity_line(acc, s["parity"])) if line]
    return lines + ["", "Barebones is the loop alone; *matched* is Lightning configured to do the plain loop's "
                    "user-visible work and no more (the default here); *defaults* is Lightning as its docs show it "
                    "(`self.log` in every step, a bar redrawn every step). Method and intervals: see the end.", ""]


def fastest_line(acc: str, s: dict) -> str | None:
    """The fastest configuration's samples/s on each side, against its floor."""
    f = s.get("floors", {}).get("fastest")
    if not f or not {"plain full", "lightning full"} <= set(f["arms"]):
        return None
    p, lt = f["arms"]["plain full"]["samples_per_s"], f["arms"]["lightning full"]["samples_per_s"]
    return (f"- **Fastest configuration** ({ACC_NAMES[acc]}, see the floor table): plain {p / 1e3:.0f}k samples/s, "
            f"Lightning matched {lt / 1e3:.0f}k ({100 * lt / p:.0f} % of plain); the step's own "
            f"{ACC_NAMES[acc]} time would allow {f['floor_samples_per_s'] / 1e3:.0f}k.")


def parity_line(acc: str, parity: list[dict]) -> str | None:
    """Same model on both sides: bitwise on the CPU; on a GPU, the same start and autotuned kernels' drift."""
    if not parity:
        return None
    start = all(p["initial_weights_identical"] for p in parity)
    end = all(p["final_weights_identical"] for p in parity)
    worst, first = max(p["max_step_loss_diff_all"] for p in parity), max(p["max_step_loss_diff_epoch0"] for p in parity)
    text = (f"- **Same model** ({ACC_NAMES[acc]}, {len(parity)} seeded run pair(s)): "
            f"{'the same' if start else 'NOT the same'} initial weights, ")
    if end:
        return text + f"identical final weights (largest step-loss difference {worst:.1e})."
    return text + (f"final weights not bitwise equal: step losses differ by up to {first:.1e} in the first epoch and "
                   f"{worst:.1e} over the run" + (" (autotuned GPU kernels; the GPU checks compare the sides bit for "
                                                   "bit with deterministic algorithms)" if acc == "gpu" else "") + ".")


def code_line(loc: dict) -> str:
    """Training source lines per side, and what `shared/` holds besides."""
    count = {pkg: sum(c["source"] for path, c in files.items() if role(path) == "training") for pkg, files in loc.items()}
    p, lt = count["plain_pytorch"], count["lightning_impl"]
    return (f"- **Code**: Lightning's side has {lt} training source lines against plain PyTorch's {p} "
            f"({p - lt} fewer, {100 * (p - lt) / max(p, 1):.0f} %); `shared/` ({count['shared']} lines) serves both. "
            "By concern: see Lines of code.")


def cost_line(acc: str, name: str, s: dict) -> str | None:
    """One setting's three arms against plain, as a headline line."""
    row = (s.get("blocks") or {}).get("settings", {}).get(name)
    if not row:
        return None
    metric = s["blocks"]["primary"]
    comp, arms = row["comparisons"][metric], row["arms"][metric]
    parts = [f"{label.split(':')[0]} {fmt_ratio(comp.get(f'{a} / {b}', {}).get('ratio'), 3)}"
             for label, a, b in COMPARISONS[:3]]
    step = arms.get("plain full") or arms.get("plain")
    where = f"{ACC_NAMES[acc]}, {name}" + (f" ({step['median'] / 1e3:.1f} ms plain step)" if step else "")
    return f"- **Lightning / plain per step, {where}**: " + "; ".join(parts) + f" ({metric} time)."


def like_for_like_section() -> list[str]:
    rows = [list(r) for r in LIKE_FOR_LIKE]
    return ["## What each side does per step, feature by feature",
            _table(rows, ["feature", "plain PyTorch", "Lightning matched (default)", "Lightning defaults (`--lightning-defaults`)"]),
            "\nThe default runs of both sides do the same user-visible work: the same bar cadence and contents, the "
            "same TensorBoard points (a test compares the event files) and the same host reads; what still differs is "
            "said in the cells.\n"]


def arms_section(summary: dict) -> list[str]:
    """Every step setting: the three Lightning arms and the A/A control against plain, in µs per step and ratio."""
    rows = []
    for acc, s in per_accelerator(summary).items():
        b = s.get("blocks")
        for name, row in (b or {}).get("settings", {}).items():
            if name == "features":
                continue
            metric = b["primary"]
            comp = row["comparisons"][metric]
            for label, a, bb in COMPARISONS:
                c = comp.get(f"{a} / {bb}")
                if c:
                    compared, ref = c.get("means_us") or (None, None)
                    rows.append([ACC_NAMES[acc], name, label, _us(ref), _us(compared),
                                 fmt_ratio(c["ratio"], 3), fmt_interval(c["difference_us"])])
    if not rows:
        return []
    return ["## Cost per step: barebones, matched, defaults",
            _table(rows, ["device", "setting", "comparison", "reference µs/step (mean)", "compared µs/step (mean)",
                          "ratio (geometric mean of pairs)", "difference per step (mean of pairs)"]),
            "\nEach row pairs two arms round by round: the means are over the same rounds as the ratio and the "
            "difference (per process first, where the rounds ran in several).\n", *precision_lines(summary), ""]


def _us(value: float | None) -> str:
    return f"{value:.0f} µs" if value is not None else NOT_MEASURED


def precision_lines(summary: dict) -> list[str]:
    """This run's half-width of the barebones ratio, and what the design gave over the runs recorded beside it."""
    out = []
    for acc, h in summary.get("step_overhead", {}).items():
        low, high = h["ratio_ci"]
        half = 100 * (high - low) / 2 / h["ratio"]
        text = f"{ACC_NAMES[acc]} precision: this run's barebones interval is ±{half:.1f} %"
        history = [r["half_width_pct"] for r in summary.get("precision_history", {}).get(acc, [])]
        if len(history) > 1:
            ordered = sorted(history)
            text += (f"; over the {len(history)} runs of this design recorded in `precision.json` (this one included) "
                     f"the half-width was {ordered[0]:.1f}-{ordered[-1]:.1f} % (median {ordered[len(ordered) // 2]:.1f} %): "
                     "that is the precision to expect, not this run's")
        runs = [r for r in summary.get("precision_history", {}).get(acc, []) if r.get("ratios")]
        if len(runs) > 1:
            text += "; the ratios of those runs: " + "; ".join(
                f"{arm} " + ", ".join(f"{r['ratios'][arm]:.3f}x" for r in runs if arm in r["ratios"])
                for arm in ("barebones", "matched", "defaults"))
        out.append(text + ".")
    return out


def price_list_section(summary: dict) -> list[str]:
    """Per side and arm: what each feature costs per step, the residual and the all-features total."""
    rows = []
    for acc, s in per_accelerator(summary).items():
        row = ((s.get("blocks") or {}).get("settings") or {}).get("features")
        if not row or "price_list" not in row:
            continue
        prices = row["price_list"][s["blocks"]["primary"]]
        for side in PRICE_SIDES:
            p = prices.get(side)
            if not p:
                continue
            for name in (*FEATURE_SWITCHES, "residual", "total"):
                label = {"residual": "residual (not explained by the rows above)",
                         "total": "**all features (full - barebones)**"}.get(name, name)
                rows.append([ACC_NAMES[acc], ARM_NAMES[side], label, fmt_interval(p[name]), resolved(p[name])])
    if not rows:
        return []
    n = next(s["blocks"]["settings"]["features"]["rounds"] for s in per_accelerator(summary).values()
             if (s.get("blocks") or {}).get("settings", {}).get("features"))
    return ["## Price list: what each feature costs per step",
            _table(rows, ["device", "side", "feature", "µs per step (95% CI)", "reading"]),
            f"\nOn the near-zero-cost step (so a feature's own cost is not hidden by the model's), {n} interleaved rounds "
            "in one worker process. A feature's row is the full run minus the full run without it; the residual is "
            "(full - barebones) minus the named rows, round by round, so the rows add up to the total exactly and the "
            "residual is what the features do together or what the framework does only when they are on (for "
            "Lightning: its logger connector and per-callback hooks). A row whose interval holds 0 is not resolved.\n"]


def resolved(ci: dict | None) -> str:
    if not ci:
        return NOT_MEASURED
    if ci["n"] < 5:
        return "range only"
    return "not resolved" if ci["low"] <= 0 <= ci["high"] else ("a cost" if ci["mean"] > 0 else "a saving")


def floor_section(raw: dict, summary: dict) -> list[str]:
    """The device's own time per step against each side's, and the fastest configuration's samples/s."""
    rows = []
    for acc, s in per_accelerator(summary).items():
        for name, f in s.get("floors", {}).items():
            for arm, a in f["arms"].items():
                share = f"{100 * a['host_share']:.0f} %" if a["host_share"] >= 0 else "≈ 0 (at its floor)"
                rows.append([ACC_NAMES[acc], name, arm, f"{a['us_per_step']:.0f}", f"{f['floor_us']:.0f}",
                             share, f"{a['samples_per_s'] / 1e3:.1f}k",
                             f"{f['floor_samples_per_s'] / 1e3:.1f}k"])
    if not rows:
        return []
    methods = "; ".join(sorted({f"{ACC_NAMES[acc]}: {f['method']}" for acc, s in per_accelerator(summary).items()
                                for f in s.get("floors", {}).values()}))
    out = ["## Against the floor: the device's own time per step",
           _table(rows, ["device", "setting", "arm", "µs/step (median)", "floor µs/step", "host overhead share",
                         "samples/s", "floor samples/s"]),
           f"\nThe floor is the step's arithmetic with nothing around it ({methods}); the host overhead share is "
           "1 - floor / step time; a step that reads below its floor is at it (the two differ by the noise of a "
           "block, ~5-10 % on the CPU). A step far above its floor measures Python (the loop, the framework, the data "
           "path), not the model.\n"]
    for acc, s in per_accelerator(summary).items():
        fast = ((s.get("blocks") or {}).get("settings") or {}).get("fastest")
        if fast and fast.get("warmup_seconds"):
            flags = " ".join(fast["flags"])
            warm = "; ".join(f"{arm} {fmt(v, ' s', 1)}" for arm, v in fast["warmup_seconds"].items() if v)
            out.append(f"{ACC_NAMES[acc]} fastest configuration (`{flags}`): each block's first epoch (compilation, "
                       f"graph recording) is left out of its time per step and timed on its own: {warm}.\n")
    return out


def gpu_checks_section(raw: dict) -> list[str]:
    checks = (raw["accelerators"].get("gpu") or {}).get("gpu_checks")
    if not checks:
        return []
    status = "passed" if checks["exit"] == 0 else f"FAILED (exit {checks['exit']})"
    measured = raw["accelerators"]["gpu"].get("measured_seconds")
    total = (f"The GPU plan took {(measured + checks['seconds']) / 60:.1f} min: {measured:.0f} s of measurements, "
             f"then the checks.\n" if measured else "")
    return ["## GPU checks", f"`pytest -m gpu tests/test_gpu.py` {status} in {checks['seconds']:.0f} s: "
            f"{checks['summary']} (its log: `gpu_checks.log`). {total}"]
