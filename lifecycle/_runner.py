"""Running an event loop for ``Supervisor.run()`` without ever hanging on its teardown."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
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
