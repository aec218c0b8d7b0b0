"""Fair line counts: logical source lines (tokenize minus docstrings) and ast.stmt nodes."""

from __future__ import annotations

import ast
import io
import tokenize
from dataclasses import dataclass
from pathlib import Path

_NON_CODE = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
             tokenize.ENCODING, tokenize.ENDMARKER}

# measurement code lives in modules of these names on both sides, so it can be counted apart from training code
MEASUREMENT_FILES = ("recorder.py",)
ROLES = ("training", "measurement")


@dataclass(frozen=True)
class LineCount:
    """Counts for one file (or a sum): raw lines, logical source lines, statements."""

    raw: int
    source: int
    statements: int

    def __add__(self, other: LineCount) -> LineCount:
        return LineCount(self.raw + other.raw, self.source + other.source, self.statements + other.statements)


def docstring_lines(tree: ast.AST) -> set[int]:
    """Line numbers covered by module, class and function docstrings."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                lines.update(range(first.lineno, first.end_lineno + 1))
    return lines


def count_source(text: str) -> LineCount:
    """Count one module's text: lines holding a real token and ast.stmt nodes, docstrings left out of both."""
    tree = ast.parse(text)
    code_lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type not in _NON_CODE:
            code_lines.update(range(tok.start[0], tok.end[0] + 1))
    docstrings = docstring_lines(tree)
    # a docstring is one Expr statement starting on a docstring line; no other statement starts there
    statements = sum(isinstance(node, ast.stmt) and node.lineno not in docstrings for node in ast.walk(tree))
    return LineCount(len(text.splitlines()), len(code_lines - docstrings), statements)


def role(path: str) -> str:
    """'measurement' for a side's recorder module (timers only), 'training' for the rest."""
    return "measurement" if Path(path).name in MEASUREMENT_FILES else "training"


def by_role(counts: dict[str, LineCount]) -> dict[str, LineCount]:
    """A package's per-file counts summed per role: training first, then measurement."""
    return {name: total({path: c for path, c in counts.items() if role(path) == name}) for name in ROLES}


def count_package(folder: Path) -> dict[str, LineCount]:
    """Counts per .py file of a package (relative path -> LineCount), sorted by path."""
    return {str(p.relative_to(folder.parent)): count_source(p.read_text(encoding="utf-8"))
            for p in sorted(folder.rglob("*.py"))}


def total(counts: dict[str, LineCount]) -> LineCount:
    """The sum of per-file counts."""
    return sum(counts.values(), LineCount(0, 0, 0))
