"""Ctrl-C or SIGTERM while a side's command is still starting (seconds on a busy machine): one line, exit 130;
once its CLI runs the command, both raise KeyboardInterrupt, which the CLI turns into its own line."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator


def _interrupted(signum, frame) -> None:
    print("interrupted while starting; nothing was written", file=sys.stderr, flush=True)
    os._exit(130)


def quiet_while_starting() -> None:
    """Under `python -m <side>.<command>`, until the CLI takes over, Ctrl-C or SIGTERM is one line and exit 130
    instead of a traceback or a silent death."""
    # while `python -m pkg.mod` imports pkg, runpy has set sys.argv[0] to "-m": any other import leaves them alone
    if sys.argv[:1] == ["-m"]:
        signal.signal(signal.SIGINT, _interrupted)
        signal.signal(signal.SIGTERM, _interrupted)


def _terminated(signum: int, frame: object) -> None:
    # `kill` or a job scheduler's stop ends the command as Ctrl-C does, on both sides (Lightning runs its own SIGTERM
    # handler first, then this one); a second SIGTERM kills at once
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise KeyboardInterrupt


@contextlib.contextmanager
def interrupts_raise() -> Iterator[None]:
    """Inside, Ctrl-C and SIGTERM raise KeyboardInterrupt; after, the handlers from before (start-up's one line
    excepted: by then something may have been written)."""
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminated)
    try:
        yield
    finally:
        for signum, handler in before.items():
            if handler is _interrupted:
                handler = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
            signal.signal(signum, handler)
