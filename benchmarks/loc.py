"""Fair line counts: logical source lines (tokenize minus docstrings) and ast.stmt nodes."""

from __future__ import annotations

import ast
import difflib
import io
import tokenize
from dataclasses import dataclass
from pathlib import Path

_NON_CODE = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
             tokenize.ENCODING, tokenize.ENDMARKER}

# measurement code lives in modules of these names on both sides, so it can be counted apart from training code
MEASUREMENT_FILES = ("recorder.py",)
# top-level definitions that exist only so one side does the same work (and prints the same) as the other
PARITY_DEFS = ("NOISE", "_drop_advert", "silence_noise", "aligned_trainer_settings")
ROLES = ("training", "parity settings", "measurement")


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
    return count_parts(text)[""]


def _span(node: ast.stmt) -> set[int]:
    """The lines of a top-level statement, its decorators included."""
    first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
    return set(range(first, node.end_lineno + 1))


def _names(node: ast.stmt) -> set[str]:
    """The names a top-level def, class or assignment binds."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
    return {t.id for t in targets if isinstance(t, ast.Name)}


def count_parts(text: str, split: tuple[str, ...] = ()) -> dict[str, LineCount]:
    """Counts for the top-level definitions named in `split` (each under its name, when present) and for the
    rest of the module (under ""): lines holding a real token and ast.stmt nodes, docstrings left out of both."""
    tree = ast.parse(text)
    code_lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type not in _NON_CODE:
            code_lines.update(range(tok.start[0], tok.end[0] + 1))
    docstrings = docstring_lines(tree)
    # a docstring is one Expr statement starting on a docstring line; no other statement starts there
    starts = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.stmt) and node.lineno not in docstrings]
    spans = {name: _span(node) for node in tree.body for name in _names(node) if name in split}
    rest = set(range(1, len(text.splitlines()) + 1)).difference(*spans.values())
    return {name: LineCount(len(lines), len((code_lines - docstrings) & lines), sum(n in lines for n in starts))
            for name, lines in {"": rest, **spans}.items()}


def role(path: str) -> str:
    """'measurement' for a side's recorder module (timers only), 'parity settings' for a definition counted apart
    as one (`file.py:name`), 'training' for the rest."""
    if ":" in Path(path).name:
        return "parity settings"
    return "measurement" if Path(path).name in MEASUREMENT_FILES else "training"


def by_role(counts: dict[str, LineCount]) -> dict[str, LineCount]:
    """A package's per-file counts summed per role: training first, then measurement."""
    return {name: total({path: c for path, c in counts.items() if role(path) == name}) for name in ROLES}


def count_package(folder: Path) -> dict[str, LineCount]:
    """Counts per .py file of a package (relative path -> LineCount), sorted by path; a parity definition
    (PARITY_DEFS) is counted apart from its file, as `path:name`."""
    out: dict[str, LineCount] = {}
    for p in sorted(folder.rglob("*.py")):
        path = str(p.relative_to(folder.parent))
        for name, count in count_parts(p.read_text(encoding="utf-8"), PARITY_DEFS).items():
            out[f"{path}:{name}" if name else path] = count
    return out


def total(counts: dict[str, LineCount]) -> LineCount:
    """The sum of per-file counts."""
    return sum(counts.values(), LineCount(0, 0, 0))


@dataclass(frozen=True)
class RowDiff:
    """Side-by-side rows of two files that are not blank on both sides, and how many of them differ."""

    differ: int
    rows: int


def side_by_side_rows(left: str, right: str) -> RowDiff:
    """Rows of a side-by-side diff (as sdiff lays them out, aligned by difflib), blank rows left out."""
    a, b = left.splitlines(), right.splitlines()
    differ = rows = 0
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        # a replaced block pairs its lines up row by row; the longer side's surplus rows stand alone
        left_part, right_part = a[i1:i2], b[j1:j2]
        for k in range(max(len(left_part), len(right_part))):
            if "".join(left_part[k:k + 1] + right_part[k:k + 1]).strip():
                rows += 1
                differ += tag != "equal"
    return RowDiff(differ, rows)


def mirrored_pairs(plain: Path, lightning: Path) -> list[str]:
    """File names present in both folders (package markers left out), sorted."""
    names = {p.name for p in plain.glob("*.py")} & {p.name for p in lightning.glob("*.py")}
    return sorted(names - {"__init__.py"})


def main() -> None:
    """Print, per mirrored pair, how many non-blank side-by-side rows differ; then the files with no counterpart."""
    root = Path(__file__).resolve().parents[1]
    plain, lightning = root / "plain_pytorch", root / "lightning_impl"
    pairs = mirrored_pairs(plain, lightning)
    print("Rows of `sdiff -w 200` not blank on both sides, and how many differ, per file both sides have:")
    for name in pairs:
        diff = side_by_side_rows((plain / name).read_text(encoding="utf-8"),
                                 (lightning / name).read_text(encoding="utf-8"))
        print(f"  {name}: {diff.differ} of {diff.rows} non-blank rows differ")
    alone = [f"{folder.name}/{p.name}" for folder in (plain, lightning) for p in sorted(folder.glob("*.py"))
             if p.name not in pairs and p.name != "__init__.py"]
    print("No counterpart (the other side has no file for it; its work is the framework's or another file's): "
          + ", ".join(alone))


if __name__ == "__main__":
    main()
