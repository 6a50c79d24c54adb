"""The asyncio backend (see :mod:`lifecycle._backend`)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

name = "asyncio"
sleep = asyncio.sleep


def now() -> float:
    return asyncio.get_running_loop().time()


def spawn_detached(main: Callable[[], Coroutine[Any, Any, None]], context: contextvars.Context,
                   name: str) -> object:
    loop = asyncio.get_running_loop()
    return context.copy().run(loop.create_task, main(), name=name)


def loop_poster() -> Callable[[Callable[[], object]], object]:
    return asyncio.get_running_loop().call_soon_threadsafe


def all_tasks() -> list[Any]:
    return list(asyncio.all_tasks())


def current_task() -> Any:
    return asyncio.current_task()


def in_task() -> bool:
    return asyncio.current_task() is not None


def task_coro(task: Any) -> Any:
    return task.get_coro()


def task_name(task: Any) -> str:
    return str(task.get_name())


def task_context(task: Any) -> contextvars.Context | None:
    get_context = getattr(task, "get_context", None)  # Python 3.12+
    return None if get_context is None else get_context()


def loop_key() -> object:
    """What identifies this event loop (task hooks are installed once per key)."""
    return asyncio.get_running_loop()


def _plain_task(loop: asyncio.AbstractEventLoop, coro: Any, **kw: Any) -> Any:
    return asyncio.Task(coro, loop=loop, **kw)


def install_task_hook(on_spawn: Callable[[Any, Any, contextvars.Context | None], None]
                      ) -> Callable[[], None]:
    """Call ``on_spawn`` for each task this loop creates: a task factory chained to the
    loop's own. Returns the function that takes it out again."""
    loop = asyncio.get_running_loop()
    prev = loop.get_task_factory()
    make = prev if prev is not None else _plain_task

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kw: Any) -> Any:
        task = make(loop, coro, **kw)
        on_spawn(task, coro, kw.get("context"))
        return task

    loop.set_task_factory(factory)

    def remove() -> None:
        if loop.get_task_factory() == factory:
            loop.set_task_factory(prev)

    return remove


def run(main: Callable[[], Coroutine[Any, Any, T]], grace: float) -> T:
    """Like ``asyncio.run``, but left-over tasks get ``grace`` seconds, then it returns."""
    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main())
    finally:
        try:
            _bounded_teardown(loop, grace)
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _bounded_teardown(loop: asyncio.AbstractEventLoop, grace: float) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.wait(tasks, timeout=grace))
    with contextlib.suppress(Exception):
        loop.run_until_complete(asyncio.wait_for(loop.shutdown_asyncgens(), grace))
    executor = getattr(loop, "_default_executor", None)
    if executor is not None:
        executor.shutdown(wait=False, cancel_futures=True)
