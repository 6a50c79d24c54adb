"""Running an event loop for ``Supervisor.run()`` without ever hanging on its teardown.

Both ``asyncio.run`` and ``trio.run`` wait, without a deadline, for every task to end when
the main one returns. A hook the supervisor already abandoned (it ignores cancellation, or
sits in a worker thread Python cannot stop) would hang the process there, after the report
was written. The runners here give the leftovers ``TEARDOWN_GRACE`` seconds and then
return the result anyway; the report has already named what was left behind. Also here:
a console for the lifecycle log when the process configured no logging.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import Any, TypeVar

from ._bounded import ABANDON_GRACE

T = TypeVar("T")
log = logging.getLogger("lifecycle")

#: Seconds left-over tasks get to react to cancellation when the loop ends.
TEARDOWN_GRACE = ABANDON_GRACE

#: Seconds stuck non-daemon threads get at interpreter exit before the process exits anyway.
EXIT_GRACE = 0.5


def run_asyncio(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Like ``asyncio.run``, but teardown is bounded (see the module docstring)."""
    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main())
    finally:
        try:
            _bounded_teardown(loop)
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _bounded_teardown(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.wait(tasks, timeout=TEARDOWN_GRACE))
    with contextlib.suppress(Exception):
        loop.run_until_complete(asyncio.wait_for(loop.shutdown_asyncgens(), TEARDOWN_GRACE))
    executor = getattr(loop, "_default_executor", None)
    if executor is not None:
        executor.shutdown(wait=False, cancel_futures=True)


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
_WAKE = object()


def run_trio(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Like ``trio.run``, but returns ``TEARDOWN_GRACE`` s after ``main`` returned even if a
    system task will not end (``trio.run`` would wait for it forever).

    Trio runs as a guest of the small loop here (``trio.lowlevel.start_guest_run``), so this
    loop can stop driving it. An abandoned run is then closed, which makes trio release
    its global state (a later ``trio.run`` in this thread works).
    """
    import outcome
    import trio

    calls: queue.SimpleQueue[Any] = queue.SimpleQueue()
    finished: list[outcome.Outcome[T]] = []
    returned: list[outcome.Outcome[T]] = []
    guest: list[Any] = []
    saved = _current_handlers()

    async def body() -> T:
        try:
            value = await main()
        except BaseException as exc:
            returned.append(outcome.Error(exc))
            calls.put(_WAKE)
            raise
        returned.append(outcome.Value(value))
        calls.put(_WAKE)
        return value

    trio.lowlevel.start_guest_run(body, run_sync_soon_threadsafe=calls.put,
                                  done_callback=finished.append)
    give_up_at: float | None = None
    while not finished:
        timeout = None if give_up_at is None else give_up_at - time.monotonic()
        if timeout is not None and timeout <= 0:
            break
        try:
            call = calls.get(timeout=timeout)
        except queue.Empty:
            break
        if call is _WAKE:
            give_up_at = time.monotonic() + TEARDOWN_GRACE
            continue
        if not guest and hasattr(call, "__self__"):
            guest.append(call.__self__)  # the first call is the guest run's own tick
        call()
    if finished:
        return finished[0].unwrap()
    _abandon(guest[0] if guest else None)
    _restore_handlers(saved)
    return returned[0].unwrap()


def _abandon(state: Any) -> None:
    """Close a guest run whose system tasks will not end; trio then resets its state."""
    gen = getattr(state, "unrolled_run_gen", None)
    if gen is None:  # pragma: no cover - a trio without this attribute: leave it be
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "guest run got abandoned"
        with contextlib.suppress(Exception):
            gen.close()


def _current_handlers() -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}


def _restore_handlers(saved: dict[int, Any]) -> None:
    for signum, handler in saved.items():
        if handler is not None:
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(signum, handler)


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
