"""What ``Supervisor.run()`` adds around ``serve()``: a bounded event-loop teardown, and a
console for the lifecycle log when the process configured no logging."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

#: Seconds left-over tasks get to react to cancellation when the loop ends.
_TEARDOWN_GRACE = 1.0


def run_asyncio(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Like ``asyncio.run``, but teardown is bounded.

    ``asyncio.run`` cancels every remaining task and then waits for all of them, and joins
    the default executor's threads, without a deadline. A task the supervisor already
    abandoned (it ignores cancellation) would hang the process there; this waits
    ``_TEARDOWN_GRACE`` seconds and leaves the rest to the leak report.
    """
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
        loop.run_until_complete(asyncio.wait(tasks, timeout=_TEARDOWN_GRACE))
    with contextlib.suppress(Exception):
        loop.run_until_complete(asyncio.wait_for(loop.shutdown_asyncgens(), _TEARDOWN_GRACE))
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
