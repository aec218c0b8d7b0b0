"""The two sides read as one: mirrored files keep their shared names in one order; replaced blocks are tagged."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAIRS = ["train.py", "checkpoint.py", "evaluate.py", "callbacks.py", "recorder.py", "module.py"]
# plain blocks the Trainer (or a Lightning callback, logger or strategy) replaces
REPLACED = ["CheckpointSaver", "EarlyStopping", "TrainLogger", "init_distributed", "Parts", "TrainState",
            "run_epochs", "train_one_epoch", "evaluate", "to_device", "autocast", "make_callbacks",
            "wrap_model", "all_reduce_sum", "broadcast_buffers", "epoch_means", "checkpoint_state",
            "restore"]
MARKER = "# Lightning:"


def defined_names(path: Path) -> list[str]:
    """Function and class names in the order they appear in the file (methods included)."""
    nodes = [n for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
             if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    return [n.name for n in sorted(nodes, key=lambda n: n.lineno)]


@pytest.mark.parametrize("name", [n for n in PAIRS if (ROOT / "plain_pytorch" / n).is_file()
                                  and (ROOT / "lightning_impl" / n).is_file()])
def test_mirrored_files_share_names_in_one_order(name: str) -> None:
    plain, lightning = defined_names(ROOT / "plain_pytorch" / name), defined_names(ROOT / "lightning_impl" / name)
    shared = set(plain) & set(lightning)
    assert [n for n in plain if n in shared] == [n for n in lightning if n in shared], name


def marked(lines: list[str], node: ast.FunctionDef | ast.ClassDef) -> bool:
    """A marker on the line above the definition (and its decorators), on the def line or on the first body line."""
    top = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    body = node.body[1] if len(node.body) > 1 and isinstance(node.body[0], ast.Expr) \
        and isinstance(node.body[0].value, ast.Constant) else node.body[0]  # the statement after the docstring
    candidates = lines[max(top - 2, 0):node.lineno] + lines[body.lineno - 2:body.lineno]
    return any(MARKER in line for line in candidates)


def test_every_block_lightning_replaces_is_tagged() -> None:
    found, untagged = set(), []
    for path in sorted((ROOT / "plain_pytorch").glob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.parse("\n".join(lines)).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in REPLACED:
                found.add(node.name)
                if not marked(lines, node):
                    untagged.append(f"{path.name}: {node.name}")
    assert found == set(REPLACED), f"not found in plain_pytorch/: {sorted(set(REPLACED) - found)}"
    assert not untagged, f"no '{MARKER}' marker at: {untagged}"


@pytest.mark.parametrize("name", ["train.py", "evaluate.py"])
def test_every_call_of_a_replaced_block_in_the_wiring_is_tagged(name: str) -> None:
    """Where plain train.py / evaluate.py call a block Lightning replaces, the marker is on that line or the one
    above, so a reader of the wiring sees what the framework does there."""
    lines = (ROOT / "plain_pytorch" / name).read_text(encoding="utf-8").splitlines()
    untagged = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, ast.Call):
            called = getattr(node.func, "id", getattr(node.func, "attr", None))
            if called in REPLACED and not any(MARKER in line for line in lines[max(node.lineno - 2, 0):node.lineno]):
                untagged.append(f"{name}:{node.lineno}: {called}")
    assert not untagged, f"no '{MARKER}' marker at: {untagged}"


MAX_LINE = 100  # `sdiff -w 200` (make sdiff) shows two such lines whole, side by side


@pytest.mark.parametrize("side", ["plain_pytorch", "lightning_impl"])
def test_no_line_is_wider_than_half_an_sdiff(side: str) -> None:
    long = [f"{path.name}:{n}" for path in sorted((ROOT / side).glob("*.py"))
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if len(line) > MAX_LINE]
    assert not long, f"lines over {MAX_LINE} characters: {long}"
