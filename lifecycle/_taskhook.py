"""Where each task was created and by which service: the task half of the leak hooks.

While a leak check runs on an event loop, a task factory (asyncio) or an instrument (trio)
records each new task's :class:`~lifecycle._threadhook.Origin`, refcounted per loop or run.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import weakref
from typing import Any

from lifecycle._context import current_service
from lifecycle._threadhook import Origin, capture_origin

task_origins: weakref.WeakKeyDictionary[Any, Origin] = weakref.WeakKeyDictionary()


def async_backend() -> str | None:
    """The async library running in this thread: "trio", "asyncio" or None."""
    trio = sys.modules.get("trio")
    if trio is not None and trio.lowlevel.in_trio_task():
        return "trio"
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return None
    return "asyncio" if asyncio.current_task() is not None else None


def all_tasks(backend: str) -> list[Any]:
    if backend == "asyncio":
        return list(asyncio.all_tasks())
    import trio

    tasks, todo = [], [trio.lowlevel.current_root_task()]
    while todo:
        task = todo.pop()
        if task is not None:
            tasks.append(task)
            for nursery in task.child_nurseries:
                todo.extend(nursery.child_tasks)
    return tasks


def current_task(backend: str) -> Any:
    if backend == "asyncio":
        return asyncio.current_task()
    import trio

    return trio.lowlevel.current_task()


def _plain_task(loop: asyncio.AbstractEventLoop, coro: Any, **kw: Any) -> Any:
    return asyncio.Task(coro, loop=loop, **kw)


class _TaskHook:
    """Records the origin of tasks created on one event loop / trio run (refcounted)."""

    def __init__(self, backend: str) -> None:
        self.backend, self.count = backend, 0
        self.prev: Any = None
        self.instrument: Any = None
        if backend == "asyncio":
            self.loop: Any = asyncio.get_running_loop()
            self.prev = self.loop.get_task_factory()
            self.loop.set_task_factory(self._factory)
        else:
            import trio

            class _Spawned(trio.abc.Instrument):
                def task_spawned(self, task: trio.lowlevel.Task) -> None:
                    task_origins[task] = capture_origin(task.context.get(current_service),
                                                        task.coro)

            self.instrument = _Spawned()
            trio.lowlevel.add_instrument(self.instrument)

    def _factory(self, loop: asyncio.AbstractEventLoop, coro: Any, **kw: Any) -> Any:
        make = self.prev if self.prev is not None else _plain_task
        task = make(loop, coro, **kw)
        context = kw.get("context")
        owner = context.get(current_service) if context is not None else None
        task_origins[task] = capture_origin(owner, coro)
        return task

    def remove(self) -> None:
        if self.backend == "asyncio":
            if self.loop.get_task_factory() == self._factory:
                self.loop.set_task_factory(self.prev)
            return
        import trio

        with contextlib.suppress(KeyError, RuntimeError):  # already gone / run ended
            trio.lowlevel.remove_instrument(self.instrument)


_task_hooks: dict[int, tuple[Any, _TaskHook]] = {}  # id(loop or root task) -> (key, hook)


def _hook_key(backend: str) -> Any:
    if backend == "asyncio":
        return asyncio.get_running_loop()
    import trio

    return trio.lowlevel.current_root_task()


def acquire_task_hook(backend: str) -> Any:
    key = _hook_key(backend)
    entry = _task_hooks.get(id(key))
    if entry is None or entry[0] is not key:
        entry = _task_hooks[id(key)] = (key, _TaskHook(backend))
    entry[1].count += 1
    return key


def release_task_hook(key: Any) -> None:
    entry = _task_hooks.get(id(key))
    if entry is not None and entry[0] is key:
        entry[1].count -= 1
        if entry[1].count <= 0:
            del _task_hooks[id(key)]
            entry[1].remove()
