"""Running an event loop for ``Supervisor.run()`` without ever hanging on its teardown.

Both ``asyncio.run`` and ``trio.run`` wait, without a deadline, for every task to end when
the main one returns. A hook the supervisor already abandoned (it ignores cancellation, or
sits in a worker thread Python cannot stop) would hang the process there, after the report
was written. The runners here give the leftovers ``TEARDOWN_GRACE`` seconds and then
return the result anyway; the report has already named what was left behind (each backend's
runner is in :mod:`lifecycle._backend`). Also here: a console for the lifecycle log when the
process configured no logging, and the exit that stuck non-daemon threads cannot hold up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import Any, TypeVar

from . import _backend
from ._bounded import ABANDON_GRACE

T = TypeVar("T")
log = logging.getLogger("lifecycle")

#: Seconds left-over tasks get to react to cancellation when the loop ends.
TEARDOWN_GRACE = ABANDON_GRACE

#: Seconds stuck non-daemon threads get at interpreter exit before the process exits anyway.
EXIT_GRACE = 0.5


def run_event_loop(backend: str, main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main`` on a new event loop of ``backend``; teardown bounded by ``TEARDOWN_GRACE``."""
    return _backend.named(backend).run(main, TEARDOWN_GRACE)


@contextlib.contextmanager
def console_logging() -> Iterator[None]:
    """Show the ``lifecycle`` log (one line per event, the report) on stderr for one run.

    Only when the process configured no logging at all (no handler on the root logger nor on
    ``lifecycle``): Python's bare fallback would show WARNING and above only, so a clean
    run's report would never appear. Servers such as uvicorn do the same. Any root handler
    turns it off: ``logging.basicConfig(...)``, ``lifecycle.logs.configure()``, or
    ``logging.getLogger().addHandler(logging.NullHandler())`` for silence.
    """
    from .logs import TEXT_FORMAT

    logger = logging.getLogger("lifecycle")
    if logging.getLogger().handlers or logger.handlers:
        yield
        return
    handler = logging.StreamHandler()  # stderr
    handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    level = logger.level
    if level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
def stuck_threads(before: Iterable[threading.Thread]) -> list[threading.Thread]:
    """Non-daemon threads alive now that were not alive in ``before``."""
    known = set(before)
    return [t for t in threading.enumerate()
            if t.is_alive() and not t.daemon and t not in known
            and t is not threading.main_thread() and not isinstance(t, threading._DummyThread)]


def exit_despite(threads: list[threading.Thread], code: int) -> bool:
    """At interpreter exit, give ``threads`` ``EXIT_GRACE`` s, then name the ones still
    running and end the process with ``code``: Python would otherwise wait for them forever.

    Registered with ``threading._register_atexit``, which runs before the interpreter joins
    its non-daemon threads (``atexit`` runs after, too late). False when that is missing.
    """
    register = getattr(threading, "_register_atexit", None)
    if register is None or not threads:  # pragma: no cover - an interpreter without it
        return False

    def at_exit() -> None:
        end = time.monotonic() + EXIT_GRACE
        for thread in threads:
            thread.join(max(0.0, end - time.monotonic()))
        alive = [t for t in threads if t.is_alive()]
        if not alive:
            return
        log.warning("exiting with code %d although %d non-daemon thread(s) still run (Python "
                    "cannot stop threads; the report names where each is stuck): %s", code,
                    len(alive), ", ".join(t.name for t in alive))
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)

    try:
        register(at_exit)
    except RuntimeError:  # the interpreter is already shutting down
        return False
    return True
