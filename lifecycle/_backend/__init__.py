"""The one place that knows which async library is running; the rest of the core calls here.

The engine, the leak checks and ``Supervisor.run()`` need a handful of things anyio does not
offer (or offers at a cost that showed in the benchmarks): the loop's clock, a task nobody
waits for, the live tasks and their coroutines, a hook on task creation, and running a loop
without hanging on its teardown. Each backend module (:mod:`._asyncio`, :mod:`._trio`)
implements the :class:`Backend` protocol; nothing outside this package branches on the
backend. Adding a backend is adding a module here and a line in :func:`current`/:func:`named`.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

from . import _asyncio

T = TypeVar("T")

#: Called for every task created while a task hook is installed: (task, coroutine, the
#: context it runs in, when known).
OnSpawn = Callable[[Any, Any, "contextvars.Context | None"], None]


class Backend(Protocol):
    """What the core needs of an event loop library (see the module docstring)."""

    name: str

    def now(self) -> float: ...

    def spawn_detached(self, main: Callable[[], Coroutine[Any, Any, None]],
                       context: contextvars.Context, name: str) -> object: ...

    def loop_poster(self) -> Callable[[Callable[[], object]], object]:
        """A thread-safe ``post(callback)`` into this loop that never waits for it to run."""

    def all_tasks(self) -> list[Any]: ...

    def current_task(self) -> Any: ...

    def in_task(self) -> bool:
        """Whether the code calling this runs in a task (not a callback or signal handler)."""

    def task_coro(self, task: Any) -> Any: ...

    def task_name(self, task: Any) -> str: ...

    def task_context(self, task: Any) -> contextvars.Context | None: ...

    def loop_key(self) -> object: ...

    def install_task_hook(self, on_spawn: OnSpawn) -> Callable[[], None]: ...

    async def sleep(self, seconds: float) -> None: ...

    def run(self, main: Callable[[], Coroutine[Any, Any, T]], grace: float) -> T: ...


def _load_trio() -> Backend:
    from . import _trio as module  # trio is optional: imported only when it runs

    return module


def current() -> Backend | None:
    """The backend running the current task, or None outside any task."""
    backend = running()
    return backend if backend is not None and backend.in_task() else None


def running() -> Backend | None:
    """The backend whose event loop runs on this thread, inside a task or not (a signal
    handler, a callback), or None."""
    trio = sys.modules.get("trio")
    if trio is not None and trio.lowlevel.in_trio_run():
        return _load_trio()
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return None
    return _asyncio


def named(name: str) -> Backend:
    """The backend called ``name`` (``"asyncio"`` or ``"trio"``)."""
    if name == "asyncio":
        return _asyncio
    if name == "trio":
        return _load_trio()
    raise ValueError(f"unknown async backend {name!r}: 'asyncio' or 'trio'")


def now() -> float:
    """The event loop's clock, like ``anyio.current_time()`` at a tenth of the cost.

    anyio looks the backend up on every call; the lifecycle reads the clock several times
    per service and stage, which showed up as a fifth of the cost of a start and stop.
    Under trio this is trio's clock, so a ``MockClock`` still drives everything.
    """
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return _load_trio().now()


def spawn_detached(main: Callable[[], Coroutine[Any, Any, None]], context: contextvars.Context,
                   name: str) -> object:
    """Start ``main()`` as a task nobody waits for (asyncio task or trio system task)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _load_trio().spawn_detached(main, context, name)
    return _asyncio.spawn_detached(main, context, name)
