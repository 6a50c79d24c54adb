"""The trio backend (see :mod:`lifecycle._backend`); imported only when trio runs."""

from __future__ import annotations

import contextlib
import contextvars
import queue
import signal
import threading
import time
import warnings
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import outcome
import trio

T = TypeVar("T")

name = "trio"
sleep = trio.sleep
now = trio.current_time
current_task = trio.lowlevel.current_task


def spawn_detached(main: Callable[[], Coroutine[Any, Any, None]], context: contextvars.Context,
                   name: str) -> object:
    return trio.lowlevel.spawn_system_task(main, name=name, context=context.copy())


def loop_poster() -> Callable[[Callable[[], object]], object]:
    return trio.lowlevel.current_trio_token().run_sync_soon


def all_tasks() -> list[Any]:
    tasks, todo = [], [trio.lowlevel.current_root_task()]
    while todo:
        task = todo.pop()
        if task is not None:
            tasks.append(task)
            for nursery in task.child_nurseries:
                todo.extend(nursery.child_tasks)
    return tasks


def in_task() -> bool:
    return bool(trio.lowlevel.in_trio_task())


def task_coro(task: Any) -> Any:
    return task.coro


def task_name(task: Any) -> str:
    return str(task.name)


def task_context(task: Any) -> contextvars.Context | None:
    return task.context  # type: ignore[no-any-return]


def loop_key() -> object:
    """What identifies this trio run (task hooks are installed once per key)."""
    return trio.lowlevel.current_root_task()


def install_task_hook(on_spawn: Callable[[Any, Any, contextvars.Context | None], None]
                      ) -> Callable[[], None]:
    """Call ``on_spawn`` for each task this run spawns: an instrument. Returns the function
    that takes it out again."""

    class Spawned(trio.abc.Instrument):
        def task_spawned(self, task: trio.lowlevel.Task) -> None:
            on_spawn(task, task.coro, task.context)

    instrument = Spawned()
    trio.lowlevel.add_instrument(instrument)

    def remove() -> None:
        with contextlib.suppress(KeyError, RuntimeError):  # already gone / run ended
            trio.lowlevel.remove_instrument(instrument)

    return remove


_WAKE = object()

#: A teardown that keeps making progress gets up to this many graces in all: on a loaded
#: machine trio's own teardown can take longer than one grace, and abandoning a run that
#: was about to finish leaves garbage that complains whenever it is later collected.
PROGRESS_LIMIT = 4


def run(main: Callable[[], Coroutine[Any, Any, T]], grace: float) -> T:
    """Like ``trio.run``, but returns once the run has made no progress for ``grace`` s after
    ``main`` returned (at most ``PROGRESS_LIMIT * grace`` s after), even if a system task will
    not end (``trio.run`` would wait for it forever).

    Trio runs as a guest of the small loop here (``trio.lowlevel.start_guest_run``), so this
    loop can stop driving it. An abandoned run is then closed, which makes trio release
    its global state (a later ``trio.run`` in this thread works).
    """
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
    give_up_at: float | None = None  # set once main returned: grace after the last call
    last_chance: float | None = None  # ... but never later than this
    while not finished:
        timeout = None if give_up_at is None else give_up_at - time.monotonic()
        if timeout is not None and timeout <= 0:
            break
        try:
            call = calls.get(timeout=timeout)
        except queue.Empty:
            break
        if call is _WAKE:
            last_chance = time.monotonic() + PROGRESS_LIMIT * grace
            give_up_at = time.monotonic() + grace
            continue
        if last_chance is not None:  # the teardown is moving: a loaded machine is slow, not stuck
            give_up_at = min(time.monotonic() + grace, last_chance)
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
