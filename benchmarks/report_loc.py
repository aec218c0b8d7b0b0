"""The report's lines-of-code section: each side's files, by role and by concern; `shared/` as one line."""

from __future__ import annotations

from pathlib import PurePath

from benchmarks.formatting import _table
from benchmarks.loc import LineCount, by_role, role, total

# which concern each file of a side serves (the same file name on both sides where the concern is the same)
CONCERNS = {"train.py": "entry point, wiring, test of the best weights",
            "module.py": "steps, loss, optimizer (the LightningModule's hooks)",
            "loop.py": "the loop: epochs, devices, state (the Trainer's work)", "datamodule.py": "data",
            "checkpoint.py": "checkpoints and resume", "callbacks.py": "callbacks: early stopping, checkpoints, bar",
            "early_stopping.py": "callbacks: early stopping, checkpoints, bar", "logger.py": "logging and progress bar",
            "distributed.py": "DDP", "evaluate.py": "evaluate command", "recorder.py": "measurement (timers)",
            "__init__.py": "package"}
PARITY_CONCERN = "parity settings (the same work as the other side)"
SIDES_PKGS = ("plain_pytorch", "lightning_impl")


def loc_totals(loc: dict) -> dict[str, LineCount]:
    """Per-package sums of the recorded per-file counts."""
    return {pkg: total({k: LineCount(**v) for k, v in files.items()}) for pkg, files in loc.items()}


def loc_roles(loc: dict) -> dict[str, dict[str, LineCount]]:
    """Per-side sums of training and measurement code (shared/ has no sides)."""
    return {pkg: by_role({k: LineCount(**v) for k, v in files.items()}) for pkg, files in loc.items() if pkg != "shared"}


def concerns(loc: dict) -> dict[str, dict[str, int]]:
    """Source lines per concern and side."""
    out: dict[str, dict[str, int]] = {}
    for pkg in SIDES_PKGS:
        for path, c in loc.get(pkg, {}).items():
            name = PurePath(path).name
            concern = PARITY_CONCERN if role(path) == "parity settings" else CONCERNS.get(name, "other")
            out.setdefault(concern, dict.fromkeys(SIDES_PKGS, 0))[pkg] += c["source"]
    return out


def loc_section(loc: dict) -> list[str]:
    totals, roles = loc_totals(loc), loc_roles(loc)
    rows = [[path, role(path), c["raw"], c["source"], c["statements"]]
            for pkg in SIDES_PKGS for path, c in loc.get(pkg, {}).items()]
    for pkg in SIDES_PKGS:
        rows += [[f"**{pkg}/ {name}**", name, c.raw, c.source, c.statements] for name, c in roles.get(pkg, {}).items()]
        rows.append([f"**total {pkg}/**", "", totals[pkg].raw, totals[pkg].source, totals[pkg].statements])
    t = totals["shared"]
    rows.append([f"shared/ ({len(loc['shared'])} files, used by both)", "", t.raw, t.source, t.statements])
    p, lt = roles["plain_pytorch"], roles["lightning_impl"]
    train, parity, measure = ((p[r], lt[r]) for r in ("training", "parity settings", "measurement"))
    by_concern = [[name, v["plain_pytorch"], v["lightning_impl"], v["plain_pytorch"] - v["lightning_impl"]]
                  for name, v in sorted(concerns(loc).items(), key=lambda kv: -(kv[1]["plain_pytorch"] - kv[1]["lightning_impl"]))
                  if any(v.values())]
    return ["## Lines of code", _table(rows, ["file", "role", "raw lines", "source lines", "statements"]),
            f"\nSource lines exclude blanks, comments and docstrings; statements count `ast.stmt` nodes other than "
            f"docstrings, which line wrapping cannot change. `shared/` is used by both and charged to neither. "
            f"Roles: measurement is each side's `recorder.py` (timers the benchmark reads); parity settings are the "
            f"definitions counted apart as `file.py:name` (they exist only so one side does and prints the same work "
            f"as the other: Lightning's Trainer arguments matched to the plain loop, its noise filter); the rest is "
            f"training. Lightning's side has {train[1].source} training source lines against plain PyTorch's "
            f"{train[0].source} ({train[1].source / max(train[0].source, 1):.2f}x); parity settings {parity[1].source} "
            f"vs {parity[0].source}; measurement {measure[1].source} vs {measure[0].source}.\n",
            _table(by_concern, ["concern", "plain PyTorch source lines", "Lightning source lines", "removed by Lightning"]),
            "\nBy concern: what each side's files are for (the same file name where the concern is the same).\n"]
