"""One argparse parser generated from TrainConfig, so both sides accept exactly the same flags."""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import signal
import sys
import typing
from collections.abc import Sequence
from pathlib import Path

from shared.config import ACCELERATORS, TrainConfig, require_path
from shared.errors import ConfigError, TrainingError, WaferBenchError
from shared.outputs import TRAINING_OUTPUTS, check_output_folder, existing_outputs, is_global_rank_zero
from shared.results import RunResult, per_class_table, summary_lines
from shared.startup import interrupts_raise

# --help lists the flags in three groups; a field named in neither tuple is part of the experiment
RUN_FIELDS = ("num_workers", "accelerator", "devices", "num_nodes", "strategy", "precision", "channels_last",
              "compile", "compile_mode", "fused_optimizer", "data_on_device", "deterministic", "log_every_n_steps", "output_dir",
              "overwrite", "resume")
FEATURE_FIELDS = ("early_stopping", "checkpoints", "tensorboard", "progress_bar", "barebones", "lightning_defaults",
                  "plots")
GROUPS = {"experiment": "what is trained: data, model, optimisation, early stopping and checkpoint ranking",
          "run": "where and how this process runs: hardware, precision, speed, outputs, resume",
          "features": "the parts of a full run, each of which can be switched off alone"}


def group_of(name: str) -> str:
    """The --help group of a TrainConfig field."""
    return "run" if name in RUN_FIELDS else "features" if name in FEATURE_FIELDS else "experiment"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but an error is a one-line usage hint then the error line, not the whole usage block."""

    def error(self, message: str) -> typing.NoReturn:
        # the generated usage runs to ~40 lines, which would push the one line that matters off the screen
        self.exit(2, f"usage: {self.prog} [flags] (--help lists them)\n{self.prog}: error: {message}\n")


def build_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser with one flag per TrainConfig field; booleans get --x/--no-x; only the flags given are parsed."""
    parser = OneLineErrorParser(prog=prog, description=description)
    groups = {title: parser.add_argument_group(title, text) for title, text in GROUPS.items()}
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        kind = hints[f.name]
        # no default in the namespace: a resume tells the flags given from the ones its checkpoint restores
        kwargs = {"default": argparse.SUPPRESS, "dest": f.name,
                  "help": f.metadata["help"] + ("" if f.default is None else f" (default: {f.default})")}
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = str if kind == (str | None) else kind
            kwargs["metavar"] = "|".join(f.metadata["choices"]) if "choices" in f.metadata else f.name.upper()
        groups[group_of(f.name)].add_argument(_flag(f.name), **kwargs)
    return parser


def parse_config(prog: str, description: str, argv: Sequence[str] | None = None) -> TrainConfig:
    """Parse flags into a validated TrainConfig; a bad value exits 2 naming its flag, before any work."""
    parser = build_parser(prog, description)
    return _config_or_exit(parser, vars(parser.parse_args(argv)))


def _config_or_exit(parser: argparse.ArgumentParser, values: dict) -> TrainConfig:
    try:
        return TrainConfig(**values)
    except ConfigError as err:
        exit_with(parser, err)


def exit_with(parser: argparse.ArgumentParser, err: WaferBenchError) -> typing.NoReturn:
    """One line: a bad value as argparse reports one (exit 2, its flag named), anything else exit 1."""
    if isinstance(err, ConfigError):
        parser.error(f"argument {_flag(err.field)}: {err}")
    print(f"{parser.prog}: error: {err}", file=sys.stderr)
    sys.exit(err.exit_code)


def run_cli(main: typing.Callable[[TrainConfig], object], prog: str, description: str,
            argv: Sequence[str] | None = None,
            stored_config: typing.Callable[[TrainConfig], dict | None] = lambda cfg: None,
            other_side_only: dict[str, str] | None = None) -> None:
    """Parse and run; the project's own errors become one line, Ctrl-C or SIGTERM one line and exit 130, the rest a
    traceback.

    `stored_config(cfg)` is the configuration of the checkpoint cfg.resume names: a resume continues it.
    A field in `other_side_only` is the other side's flag: switched on here, it is an error (saying why) before
    any work.
    """
    # until `with interrupts_raise()`, a Ctrl-C or SIGTERM is start-up's one line: nothing is written before it
    parser = build_parser(prog, description)
    argv = sys.argv[1:] if argv is None else list(argv)
    given = vars(parser.parse_args(argv))
    for name, why in (other_side_only or {}).items():
        if given.get(name):
            parser.error(f"argument {_flag(name)}: {why}")
    # a resume checks the flags given together with the checkpoint's values (resumed_config), not the defaults
    cfg = _config_or_exit(parser, {k: v for k, v in given.items() if k in NOT_RESTORED} if "resume" in given else given)
    with interrupts_raise():
        if "TORCHELASTIC_RUN_ID" in os.environ:
            signal.signal(signal.SIGINT, _interrupt_once)
        try:
            cfg = resumed_config(cfg, given, stored_config(cfg))
            main(cfg)
        except KeyboardInterrupt:  # every rank gets the Ctrl-C; one message says what to do
            exit_interrupted(prog, interrupted_message(cfg, prog, argv) if is_global_rank_zero() else None)
        except WaferBenchError as err:
            exit_with(parser, err)


def exit_interrupted(prog: str, message: str | None) -> typing.NoReturn:
    """Exit 130 after the message (None: say nothing, another rank says it), on a line of its own."""
    if message is not None:
        sys.stdout.flush()  # a progress bar may hold the line: start the message on a line of its own
        print(f"\n{prog}: {message}", file=sys.stderr)
    sys.exit(130)


def _interrupt_once(signum: int, frame: object) -> None:
    # torchrun sends SIGINT again while it shuts its workers down: one KeyboardInterrupt, not one mid-message
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


# run plumbing a resume never takes from its checkpoint: where this run writes and how it was asked to start
NOT_RESTORED = ("output_dir", "resume", "overwrite")


def resumed_config(cfg: TrainConfig, given: dict, stored: dict | None) -> TrainConfig:
    """For a resume, the stored run's configuration with the flags given applied (fit refuses experiment changes)."""
    if stored is None:
        return cfg
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    restored = {k: v for k, v in stored.items() if k in fields and k not in NOT_RESTORED and k not in given}
    try:
        return TrainConfig(**{**given, **restored})
    except ConfigError as err:
        if err.field in given:
            raise
        raise ConfigError(err.field, f"{err} (the value its checkpoint was trained with; give {_flag(err.field)})") from None


def launcher_command(argv: list[str]) -> list[str] | None:
    """The torchrun command line (up to this module) that started this process with `argv`; None outside torchrun."""
    if "TORCHELASTIC_RUN_ID" not in os.environ:
        return None
    try:  # torchrun's agent is the worker's parent, and its command line ends with the worker's arguments
        parent = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().decode().split("\0")[:-1]
    except OSError:
        return None
    if not parent or parent[len(parent) - len(argv):] != argv:
        return None
    launcher = parent[:len(parent) - len(argv)]
    if Path(launcher[0]).name.startswith("python") and len(launcher) > 1 and not launcher[1].startswith("-"):
        launcher = [Path(launcher[1]).name, *launcher[2:]]  # `torchrun`, as typed, not its interpreter and path
    return launcher


def interrupted_message(cfg: TrainConfig, prog: str, argv: list[str]) -> str:
    """Where the interrupted run's last checkpoint is and the command that continues it (under torchrun, too)."""
    last = sorted(cfg.checkpoint_dir.glob("last.*"))
    if not cfg.uses("checkpoints") or not last:
        return (f"interrupted before the first checkpoint; nothing in {cfg.output_dir} to resume: the same command "
                f"starts the run afresh")
    kept, skip = [], False
    for arg in argv:  # the same flags, without the ones --resume last replaces or excludes
        if not skip and arg not in ("--resume", "--overwrite", "--no-overwrite") and not arg.startswith("--resume="):
            kept.append(arg)
        skip = arg == "--resume"
    launcher = launcher_command(argv)
    command = shlex.join([*launcher, *kept]) if launcher else " ".join([prog, *map(shlex.quote, kept)])
    return f"interrupted; last checkpoint {last[0]}; continue with: {command} --resume last"


def build_evaluate_parser(prog: str, description: str, checkpoint_help: str) -> argparse.ArgumentParser:
    """The evaluate command's flags, the same on both sides."""
    parser = OneLineErrorParser(prog=prog, description=description)  # each help names its own default
    parser.add_argument("--checkpoint", required=True, help=checkpoint_help)
    parser.add_argument("--data", default=None,
                        help="'synthetic' or an LSWMD-format pickle; default: the data the checkpoint was trained on")
    parser.add_argument("--output-dir", default="runs/evaluate", help="folder for metrics.json and the plots (default: runs/evaluate)")
    # not the checkpoint's training batch: inference keeps no activations for backward, and a few large
    # batches beat thousands of small ones (each a wait for both threads on a busy machine)
    parser.add_argument("--batch-size", type=int, default=1024, help="inference batch size (default: 1024)")
    parser.add_argument("--accelerator", choices=ACCELERATORS, default="auto", help="where the model runs (default: auto)")
    parser.add_argument("--image-size", type=int, default=None, help="maps resized to N x N (default: the checkpoint's)")
    parser.add_argument("--split", choices=("test", "val", "all"), default=None,
                        help="maps scored: the run's own val or test split, rebuilt from the checkpoint's config "
                             "(--data must hold the same maps), or all of them; default: all for a --data file, "
                             "else test")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                        help="average each map's class probabilities over its 8 flips and 90-degree rotations; "
                             "default: the checkpoint's --tta")
    return parser


def evaluation_config(stored: dict, args: argparse.Namespace) -> TrainConfig:
    """The training run's config with the evaluate flags applied; one process, no speed flags (one pass)."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    trained = stored.get("data", "synthetic")
    data = trained if args.data is None else args.data
    if data != "synthetic" and not Path(data).is_file():  # given flags were checked before the checkpoint was read
        where = "" if Path(data).is_absolute() else " (a path relative to where training ran)"
        raise ConfigError("data", f"the checkpoint was trained on {data}{where}, which is not a file here: give "
                                  f"--data with its path now (or another file)")
    changes = {"data": data, "output_dir": args.output_dir, "resume": None, "accelerator": args.accelerator,
               "compile": False, "channels_last": False, "devices": 1, "num_nodes": 1, "strategy": "auto",
               "plots": True}
    given = (("batch_size", args.batch_size), ("image_size", args.image_size), ("tta", args.tta))
    changes.update({k: v for k, v in given if v is not None})
    if (data == "synthetic") != (trained == "synthetic"):  # a real file's cap per class means nothing for synthetic
        changes["samples_per_class"] = TrainConfig.samples_per_class
    if args.image_size is not None and args.image_size != stored.get("image_size"):
        # the model runs at any size (adaptive pooling), so nothing else would say the maps differ from training's
        print(f"warning: --image-size {args.image_size} differs from the checkpoint's image_size="
              f"{stored.get('image_size')}: the model was trained on maps of another size", file=sys.stderr)
    return TrainConfig(**{**{k: v for k, v in stored.items() if k in fields}, **changes})


def check_evaluate_args(args: argparse.Namespace) -> None:
    """The evaluate flags through TrainConfig's own checks, and the output folder, before the checkpoint is read."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    TrainConfig(**{k: v for k, v in vars(args).items() if k in fields and v is not None})
    require_path("checkpoint", args.checkpoint, "checkpoint file", "a checkpoint file's path")  # as --resume
    path = check_output_folder(args.output_dir)
    found = existing_outputs(path, TRAINING_OUTPUTS)
    if found:
        raise TrainingError(f"--output-dir {path} holds a training run ({', '.join(found)}); its metrics.json "
                            f"would be replaced: choose another folder")


def run_evaluate_cli(evaluate: typing.Callable[[argparse.Namespace], RunResult], prog: str, description: str,
                     checkpoint_help: str, argv: Sequence[str] | None = None) -> None:
    """Parse, check, evaluate, print the test metrics; the project's own errors are one line (exit 2 or 1)."""
    parser = build_evaluate_parser(prog, description, checkpoint_help)
    args = parser.parse_args(argv)
    with interrupts_raise():
        try:
            check_evaluate_args(args)
            print_evaluation(args, evaluate(args))
        except KeyboardInterrupt:
            exit_interrupted(prog, f"interrupted; the evaluation did not finish (what {args.output_dir} holds may be "
                                   f"incomplete): the same command runs it again")
        except WaferBenchError as err:
            exit_with(parser, err)


def print_evaluation(args: argparse.Namespace, result: RunResult) -> None:
    """What the evaluate command scored, its macro figures, interval and per-class table."""
    maps = sum(c["support"] for c in result.test["per_class"].values())
    split = result.scored_split
    print(f"{args.checkpoint} on {result.config['data']}: {maps} maps ({split} split)")
    print(summary_lines(result)[1].replace("test:", f"{split}:", 1))
    if result.test["f1_macro_bootstrap_95"]:
        low, high = result.test["f1_macro_bootstrap_95"]
        print(f"F1 (macro) 95 % bootstrap interval over these maps, the model fixed: {low:.4f}-{high:.4f}")
    print(per_class_table(result))
    print(f"{split} class mix: {result.test_class_mix}; confusion matrix (rows normalised by true class) in "
          f"{args.output_dir}/confusion_matrix.png; outputs in {args.output_dir}")
