"""One argparse parser generated from TrainConfig, so both sides accept exactly the same flags."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from collections.abc import Sequence

from shared.config import TrainConfig
from shared.runtime import TrainingError


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser with one flag per TrainConfig field; booleans get --x/--no-x."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        kind = hints[f.name]
        kwargs = {"default": f.default, "help": f.metadata["help"], "dest": f.name}
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = str if kind == (str | None) else kind
            kwargs["metavar"] = "|".join(f.metadata["choices"]) if "choices" in f.metadata else f.name.upper()
        parser.add_argument(_flag(f.name), **kwargs)
    return parser


def parse_config(prog: str, description: str, argv: Sequence[str] | None = None) -> TrainConfig:
    """Parse flags into a validated TrainConfig; a bad value exits 2 naming its flag, before any work."""
    parser = build_parser(prog, description)
    args = parser.parse_args(argv)
    try:
        return TrainConfig(**vars(args))
    except ValueError as err:
        name = str(err).split("=", 1)[0]
        parser.error(f"argument {_flag(name)}: {err}")
    raise AssertionError("unreachable")  # parser.error exits


def run_cli(main: typing.Callable[[TrainConfig], object], prog: str, description: str) -> None:
    """Parse, run, and turn a known failure into a one-line message and exit status 1."""
    cfg = parse_config(prog, description)
    try:
        main(cfg)
    except (ValueError, TrainingError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        sys.exit(1)
