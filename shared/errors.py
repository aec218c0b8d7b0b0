"""The project's own error types: the only exceptions the CLIs turn into a one-line message."""

from __future__ import annotations


class WaferBenchError(Exception):
    """A failure the user can act on; the CLIs print it in one line and exit with `exit_code`."""

    exit_code = 1


class ConfigError(WaferBenchError, ValueError):
    """A bad flag value: exit status 2 and the flag named, as argparse does for a malformed one."""

    exit_code = 2

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class DataError(WaferBenchError, ValueError):
    """A data file that cannot be used (unreadable, wrong layout, too few maps for the split)."""


class TrainingError(WaferBenchError, RuntimeError):
    """A bad checkpoint, output folder or run state (non-finite loss, diverged replicas)."""
