"""The tasks and threads a service owns, and how they are wound down at close."""

from __future__ import annotations

import contextvars
import functools
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from ._backend import now, spawn_detached
from ._bounded import Result
from .outcome import Outcome
from .stacks import coroutine_stack


class _Task:
    """One task a service spawned: what it runs (for its stack) and how to cancel it."""

    __slots__ = ("cancelled", "coro", "handle", "name", "scope")

    def __init__(self, name: str) -> None:
        self.name = name
        self.coro: object = None
        self.scope: anyio.CancelScope | None = None
        self.cancelled = False
        self.handle: object = None  # the backend's task, referenced while it runs

    def cancel(self) -> None:
        self.cancelled = True
        if self.scope is not None:
            self.scope.cancel()


class WorkHost:
    """A service's tasks (``run()``, loops, ``spawn()``), each running detached.

    Nobody awaits them structurally, so when a task ignores cancellation the close can
    abandon it instead of hanging on it. Each runs in its own cancel scope; the close waits
    for the set of running tasks to empty, cancels what is left at its deadline, and names
    what ignored the cancellation. A host whose tasks have all ended closes at once, with
    no await: most services' loops end in the loop turn after the shutdown is announced.
    """

    def __init__(self, label: str, on_error: Callable[[str, BaseException], None]) -> None:
        self._label = label
        self._on_error = on_error
        self._emptied: anyio.Event | None = None  # made when the close waits for the tasks
        self._closed = False
        self._running: dict[int, _Task] = {}
        self._next_key = 0
        self._interrupted = False
        self._context: contextvars.Context | None = None
        self.spawned = 0

    def open(self, context: contextvars.Context) -> None:
        """Remember the context every spawned task runs in (a copy of it)."""
        self._context = context

    @property
    def idle(self) -> bool:
        """No task is running: closing now would wait for nothing."""
        return not self._running

    def spawn(self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], name: str) -> None:
        if self._closed:
            raise RuntimeError(f"service {self._label!r} cannot spawn {name!r}: its tasks are "
                               "already closed")
        assert self._context is not None, "open() first"
        key = self._next_key
        self._next_key += 1
        self.spawned += 1
        task = self._running[key] = _Task(name)
        task.handle = spawn_detached(functools.partial(self._wrap, key, task, fn, args), self._context,
                                     f"{self._label}.{name}")

    async def _wrap(self, key: int, task: _Task, fn: Callable[..., Awaitable[Any]],
                    args: tuple[Any, ...]) -> None:
        try:
            with anyio.CancelScope() as scope:
                task.scope = scope
                if task.cancelled:
                    scope.cancel()
                coro = task.coro = fn(*args)
                await coro
        except anyio.get_cancelled_exc_class():
            raise  # cancelled from outside our scope: the event loop itself is ending
        except BaseException as exc:  # SystemExit too: recorded by the owner, never lost
            self._on_error(task.name, exc)
        finally:
            del self._running[key]
            if not self._running and self._emptied is not None:
                self._emptied.set()

    def interrupt(self) -> None:
        """A forced shutdown: stop waiting for tasks to end by themselves."""
        self._interrupted = True
        if self._emptied is not None:
            self._emptied.set()

    def stacks(self) -> str:
        return "".join(f"task {task.name}:\n{coroutine_stack(task.coro)}"
                       for task in list(self._running.values()))

    async def _until_idle(self, seconds: float, interruptible: bool) -> None:
        """Wait up to ``seconds`` for every task to end (or, if ``interruptible``, for a
        forced shutdown)."""
        end = now() + seconds
        while self._running and not (interruptible and self._interrupted):
            remaining = end - now()
            if remaining <= 0:
                return
            emptied = self._emptied = anyio.Event()
            with anyio.move_on_after(remaining):
                await emptied.wait()

    async def close(self, deadline: float, grace: float) -> Result:
        """Give the tasks ``deadline`` seconds to end, then cancel, then abandon."""
        self._closed = True
        if not self._running:
            return Result(Outcome.OK, 0.0)
        began = now()
        await self._until_idle(deadline, interruptible=True)
        if not self._running:
            return Result(Outcome.OK, now() - began)
        names = ", ".join(sorted({task.name for task in self._running.values()}))
        stack = self.stacks()
        for task in list(self._running.values()):
            task.cancel()
        await self._until_idle(grace, interruptible=False)
        elapsed = now() - began
        if self._running:
            return Result(Outcome.ABANDONED, elapsed,
                          RuntimeError(f"task(s) ignored cancellation: {names}"), stack)
        why = "forced" if self._interrupted else f"still running after {deadline:g}s"
        return Result(Outcome.CANCELLED, elapsed, RuntimeError(f"cancelled task(s) {why}: {names}"),
                      stack)


class OwnedThreads:
    """Threads started by ``spawn_thread``: named, given a stop flag, joined with a deadline."""

    def __init__(self) -> None:
        #: Bounded: at most max(64, twice the threads alive at the last pruning). Finished
        #: threads are pruned as new ones start, once the list has doubled since the last
        #: pruning, so a service that starts a thread per job for months holds the running ones.
        self.items: list[tuple[threading.Thread, threading.Event]] = []
        self._prune_at = 64
        self._lock = threading.Lock()  # spawn_thread may be called from the service's threads

    def start(self, target: Callable[..., Any], args: tuple[Any, ...], name: str, daemon: bool,
              context: contextvars.Context, on_error: Callable[[str, BaseException], None],
              stopped: bool) -> threading.Thread:
        stop = threading.Event()
        if stopped:
            stop.set()
        ctx = context.copy()

        @functools.wraps(target)
        def body() -> None:
            try:
                ctx.run(target, stop, *args)
            except BaseException as exc:
                on_error(f"thread {name}", exc)

        thread = threading.Thread(target=body, name=name, daemon=daemon)
        with self._lock:
            if len(self.items) >= self._prune_at:
                # ident is None until start(): a thread being started elsewhere is kept
                self.items = [(t, e) for t, e in self.items if t.ident is None or t.is_alive()]
                self._prune_at = max(64, 2 * len(self.items))
            self.items.append((thread, stop))
        thread.start()
        return thread

    def announce(self) -> None:
        for _, stop in self.items:
            stop.set()

    def alive(self) -> list[threading.Thread]:
        return [t for t, _ in self.items if t.is_alive()]

    async def join(self, deadline: float, interrupted: Callable[[], bool]) -> list[threading.Thread]:
        """Wait up to ``deadline`` for every thread to end; return those still alive.

        Polls with a growing interval (1 ms to 50 ms): a thread cannot wake the event loop
        safely once the loop may be gone, and polling costs nothing measurable here.
        """
        end = now() + deadline
        delay = 0.001
        while alive := self.alive():
            remaining = end - now()
            if remaining <= 0 or interrupted():
                return alive
            await anyio.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.05)
        return []
