"""The line counter on snippets with known answers."""

from __future__ import annotations

import textwrap
from pathlib import Path

from benchmarks.loc import (
    LineCount,
    RowDiff,
    by_role,
    count_package,
    count_parts,
    count_source,
    mirrored_pairs,
    role,
    side_by_side_rows,
    total,
)


def count(src: str) -> LineCount:
    return count_source(textwrap.dedent(src).lstrip("\n"))


def test_blank_lines_and_comments_are_not_source() -> None:
    c = count("""
        # a comment

        x = 1  # trailing comment counts as the code line
        y = 2
    """)
    assert (c.raw, c.source, c.statements) == (4, 2, 2)


def test_docstrings_are_excluded_but_strings_are_not() -> None:
    c = count('''
        """Module docstring
        over two lines."""


        def f(a):
            """One-line docstring."""
            s = """not a docstring"""
            return s


        class K:
            """Doc."""

            value = "x"
    ''')
    # code lines: def f, s = ..., return s, class K, value = ...
    assert c.source == 5
    # statements: def, assign, return, class, assign; docstrings are left out here as in the line count
    assert c.statements == 5


def test_wrapped_call_is_one_statement_many_lines() -> None:
    c = count("""
        result = call(
            1,
            2,
        )
    """)
    assert (c.source, c.statements) == (4, 1)


def test_multiline_string_value_counts_every_line() -> None:
    c = count('''
        text = """a
        b
        c"""
    ''')
    assert (c.source, c.statements) == (3, 1)


def test_count_package_and_total(tmp_path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('"""Only a docstring."""\n')
    (pkg / "mod.py").write_text("a = 1\nif a:\n    b = 2\n")
    counts = count_package(pkg)
    assert set(counts) == {"pkg/__init__.py", "pkg/mod.py"}
    assert counts["pkg/__init__.py"] == LineCount(1, 0, 0)
    assert total(counts) == LineCount(4, 3, 3)


def test_recorder_modules_count_as_measurement() -> None:
    counts = {"side/train.py": LineCount(10, 8, 6), "side/module.py": LineCount(5, 4, 3),
              "side/recorder.py": LineCount(7, 5, 4)}
    assert [role(path) for path in counts] == ["training", "training", "measurement"]
    assert by_role(counts) == {"training": LineCount(15, 12, 9), "parity settings": LineCount(0, 0, 0),
                               "measurement": LineCount(7, 5, 4)}
    assert by_role({"side/train.py": LineCount(1, 1, 1)})["measurement"] == LineCount(0, 0, 0)


def test_parity_definitions_are_counted_apart_from_their_file(tmp_path) -> None:
    text = ('NOISE = ("a",\n         "b")\n\n\ndef aligned_trainer_settings():\n    """Doc."""\n    return 1\n\n\n'
            'def fit():\n    return 2\n')
    parts = count_parts(text, ("NOISE", "aligned_trainer_settings", "absent"))
    assert parts == {"": LineCount(6, 2, 2), "NOISE": LineCount(2, 2, 1), "aligned_trainer_settings": LineCount(3, 2, 2)}
    assert sum(parts.values(), LineCount(0, 0, 0)) == count_source(text)
    pkg = tmp_path / "side"
    pkg.mkdir()
    (pkg / "train.py").write_text(text)
    counts = count_package(pkg)
    assert set(counts) == {"side/train.py", "side/train.py:NOISE", "side/train.py:aligned_trainer_settings"}
    assert by_role(counts)["parity settings"] == LineCount(5, 4, 3)
    assert role("side/train.py:NOISE") == "parity settings"


def test_side_by_side_rows_count_differing_rows_and_skip_blank_ones() -> None:
    left = "a = 1\n\nb = 2\nc = 3\nd = 4\n"
    right = "a = 1\n\nb = 20\nd = 4\ne = 5\n"
    # rows: a (same), blank (skipped), b/b' (differ), c (only left), d (same), e (only right)
    assert side_by_side_rows(left, right) == RowDiff(differ=3, rows=5)
    assert side_by_side_rows(left, left) == RowDiff(differ=0, rows=4)
    # a replaced block of 2 lines against 1 is 2 rows, both differing
    assert side_by_side_rows("x\ny\n", "z\n") == RowDiff(differ=2, rows=2)


def test_mirrored_pairs_are_the_files_both_sides_have(tmp_path) -> None:
    for side, names in (("p", ["__init__.py", "train.py", "loop.py"]), ("l", ["__init__.py", "train.py", "datamodule.py"])):
        (tmp_path / side).mkdir()
        for name in names:
            (tmp_path / side / name).write_text("")
    assert mirrored_pairs(tmp_path / "p", tmp_path / "l") == ["train.py"]


def test_the_plain_loop_counts_as_training_code() -> None:
    assert role("plain_pytorch/loop.py") == "training"


def test_main_prints_every_pair_and_the_files_without_a_counterpart(capsys) -> None:
    from benchmarks import loc

    loc.main()
    out = capsys.readouterr().out.splitlines()
    root = Path(__file__).resolve().parents[1]
    pairs = mirrored_pairs(root / "plain_pytorch", root / "lightning_impl")
    assert [line.split(":")[0].strip() for line in out[1:-1]] == pairs
    assert all(line.endswith("non-blank rows differ") for line in out[1:-1])
    assert "plain_pytorch/loop.py" in out[-1] and "lightning_impl/datamodule.py" in out[-1]
    assert "train.py" not in out[-1]
