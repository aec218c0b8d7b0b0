"""One argparse parser generated from TrainConfig, so both sides accept exactly the same flags."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from collections.abc import Sequence

from shared.config import ACCELERATORS, TrainConfig
from shared.results import RunResult, summary_lines
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


def build_evaluate_parser(prog: str, description: str, checkpoint_help: str) -> argparse.ArgumentParser:
    """The evaluate command's flags, the same on both sides."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help=checkpoint_help)
    parser.add_argument("--data", default="synthetic", help="'synthetic' (its test split) or an LSWMD-format pickle")
    parser.add_argument("--output-dir", default="runs/evaluate", help="folder for metrics.json and the plots")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the checkpoint's")
    parser.add_argument("--accelerator", choices=ACCELERATORS, default="auto")
    parser.add_argument("--image-size", type=int, default=None, help="default: the checkpoint's")
    return parser


def evaluation_config(stored: dict, args: argparse.Namespace) -> TrainConfig:
    """The training run's config with the evaluate flags applied; one process, no speed flags (one pass)."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    changes = {"data": args.data, "output_dir": args.output_dir, "resume": None, "accelerator": args.accelerator,
               "compile": False, "channels_last": False, "devices": 1, "num_nodes": 1, "strategy": "auto"}
    changes.update({k: v for k, v in (("batch_size", args.batch_size), ("image_size", args.image_size)) if v is not None})
    return TrainConfig(**{**{k: v for k, v in stored.items() if k in fields}, **changes})


def run_evaluate_cli(evaluate: typing.Callable[[argparse.Namespace], RunResult], prog: str, description: str,
                     checkpoint_help: str, argv: Sequence[str] | None = None) -> None:
    """Parse, evaluate, print the test metrics; a known failure is one line and exit status 1."""
    args = build_evaluate_parser(prog, description, checkpoint_help).parse_args(argv)
    try:
        result = evaluate(args)
    except (TrainingError, ValueError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        sys.exit(1)
    maps = sum(c["support"] for c in result.test["per_class"].values())
    print(f"{args.checkpoint} on {args.data}: {maps} maps")
    print(summary_lines(result)[1])
    print(f"outputs in {args.output_dir}")
