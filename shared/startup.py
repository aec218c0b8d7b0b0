"""Ctrl-C or SIGTERM while a side's command is still importing (seconds on a busy machine): one line, exit 130."""

from __future__ import annotations

import os
import signal
import sys


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


def default_interrupts() -> None:
    """Back to KeyboardInterrupt (the CLI turns it into its own line), if quiet_while_starting had taken over."""
    if signal.getsignal(signal.SIGINT) is _interrupted:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGTERM) is _interrupted:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
