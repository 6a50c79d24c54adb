"""What a SIGINT/SIGTERM means, and keeping the supervisor's handlers installed.

A second signal forces the shutdown, but only a *deliberate* second request: a terminal or
``timeout -s INT`` signals the whole process group (a child and its parent both forward
it), and some servers re-raise the signal they caught once they have stopped. Signals
within :data:`SIGNAL_REPEAT_WINDOW` seconds of the start of the shutdown are taken for
repeats of the first and ignored.

Libraries that install their own SIGINT/SIGTERM handlers (uvicorn's ``Server.serve()``
does) would silently take the signals away from the supervisor. :class:`HandlerGuard`
notices, logs a warning naming the signal, and puts the supervisor's handler back.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from collections.abc import Iterable
from typing import Any, Final

log = logging.getLogger("lifecycle")

#: Seconds after the shutdown began during which further signals count as repeats.
SIGNAL_REPEAT_WINDOW: Final = 0.75

#: Seconds between checks that the supervisor's signal handlers are still installed.
HANDLER_CHECK_INTERVAL: Final = 0.5

HANDLED: Final = (signal.SIGINT, signal.SIGTERM)

FORCE_HINT: Final = "shutting down (press Ctrl-C again to force)"


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def interactive() -> bool:
    """A person at a terminal is likely to have pressed Ctrl-C."""
    for stream in (sys.stdin, sys.stderr):
        try:
            if stream is not None and stream.isatty():
                return True
        except (ValueError, OSError):  # closed or detached stream
            continue
    return False


class SignalPolicy:
    """Decides what each received signal does: begin the shutdown, force it, or nothing."""

    def __init__(self, window: float = SIGNAL_REPEAT_WINDOW) -> None:
        self.window = window
        self.shutdown_began: float | None = None  # time.monotonic() of the shutdown request

    def shutdown_requested(self) -> None:
        if self.shutdown_began is None:
            self.shutdown_began = time.monotonic()

    def classify(self, signum: int) -> str:
        """``"shutdown"``, ``"repeat"`` (ignored) or ``"force"``."""
        if self.shutdown_began is None:
            return "shutdown"
        if time.monotonic() - self.shutdown_began < self.window:
            return "repeat"
        return "force"


class HandlerGuard:
    """Remembers the handlers installed for ``signums`` and restores them if replaced."""

    def __init__(self, signums: Iterable[int] = HANDLED) -> None:
        self.handlers: dict[int, Any] = {s: signal.getsignal(s) for s in signums}

    def check(self) -> list[str]:
        """Put back any handler another library replaced; return the signals' names."""
        replaced = []
        for signum, ours in self.handlers.items():
            current = signal.getsignal(signum)
            if current is ours:
                continue
            signal.signal(signum, ours)
            name = signal_name(signum)
            replaced.append(name)
            log.warning("the %s handler was replaced by %r; lifecycle restored its own (the "
                        "supervisor owns SIGINT and SIGTERM: stop other libraries from a stop "
                        "stage, not from their own signal handlers)", name, current)
        return replaced
