"""Where each task was created and by which service: the task half of the leak hooks.

While a leak check runs on an event loop, the backend's task-creation hook (a task factory
on asyncio, an instrument on trio) records each new task's
:class:`~lifecycle._threadhook.Origin`, refcounted per loop or run.
"""

from __future__ import annotations

import contextvars
import weakref
from collections.abc import Callable
from typing import Any

from lifecycle._backend import Backend
from lifecycle._context import current_service
from lifecycle._threadhook import Origin, capture_origin

task_origins: weakref.WeakKeyDictionary[Any, Origin] = weakref.WeakKeyDictionary()


def _record(task: Any, coro: Any, context: contextvars.Context | None) -> None:
    owner = context.get(current_service) if context is not None else None
    # frames: capture_origin <- here <- the backend's hook <- whoever created the task
    task_origins[task] = capture_origin(owner, coro, depth=3)


class _TaskHook:
    """The hook installed on one event loop / trio run, and how many checks use it."""

    def __init__(self, backend: Backend) -> None:
        self.count = 0
        self.remove: Callable[[], None] = backend.install_task_hook(_record)


_task_hooks: dict[int, tuple[object, _TaskHook]] = {}  # id(loop or root task) -> (key, hook)


def acquire_task_hook(backend: Backend) -> object:
    """Record the origin of the tasks created on the running loop until released."""
    key = backend.loop_key()
    entry = _task_hooks.get(id(key))
    if entry is None or entry[0] is not key:
        entry = _task_hooks[id(key)] = (key, _TaskHook(backend))
    entry[1].count += 1
    return key


def release_task_hook(key: object) -> None:
    entry = _task_hooks.get(id(key))
    if entry is not None and entry[0] is key:
        entry[1].count -= 1
        if entry[1].count <= 0:
            del _task_hooks[id(key)]
            entry[1].remove()
