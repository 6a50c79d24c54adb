"""The tasks and threads a service owns, and how they are wound down at close."""

from __future__ import annotations

import contextvars
import functools
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc

from ._backend import now
from ._bounded import Job, Result
from .outcome import Outcome
from .stacks import coroutine_stack


class WorkHost:
    """A service's tasks (``run()``, loops, ``spawn()``) in one task group nobody awaits.

    The group lives in a detached task, so when a task ignores cancellation the close can
    abandon the whole group instead of hanging on it.
    """

    def __init__(self, label: str, on_error: Callable[[str, BaseException], None]) -> None:
        self._label = label
        self._on_error = on_error
        self._tg: anyio.abc.TaskGroup | None = None
        self._release: anyio.Event | None = None  # both made with the host task, if ever
        self._changed: anyio.Event | None = None
        self._closed = False
        self._running: dict[int, tuple[str, object]] = {}
        self._next_key = 0
        self._interrupted = False
        self._job: Job | None = None
        self._context: contextvars.Context | None = None
        self._pending: list[tuple[int, Callable[..., Awaitable[Any]], tuple[Any, ...], str]] = []
        self.spawned = 0

    def open(self, context: contextvars.Context) -> None:
        """Remember the context; the host task starts with the first spawn (most services
        never spawn anything, and a task per service is most of what a start costs)."""
        self._context = context

    async def _host(self) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            pending, self._pending = self._pending, []
            for call in pending:
                self._start(tg, *call)
            assert self._release is not None
            await self._release.wait()

    def spawn(self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], name: str) -> None:
        if self._closed:
            raise RuntimeError(f"service {self._label!r} cannot spawn {name!r}: its tasks are "
                               "already closed")
        if self._job is None:
            assert self._context is not None, "open() first"
            self._release, self._changed = anyio.Event(), anyio.Event()
            self._job = Job(self._host, (), f"{self._label}.tasks")
            self._job.start(self._context)
        key = self._next_key
        self._next_key += 1
        self.spawned += 1
        self._running[key] = (name, None)
        if self._tg is None:
            self._pending.append((key, fn, args, name))  # the host task starts them
        else:
            self._start(self._tg, key, fn, args, name)

    def _start(self, tg: anyio.abc.TaskGroup, key: int, fn: Callable[..., Awaitable[Any]],
               args: tuple[Any, ...], name: str) -> None:
        tg.start_soon(self._wrap, key, fn, args, name, name=f"{self._label}.{name}")

    async def _wrap(self, key: int, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...],
                    name: str) -> None:
        try:
            coro = fn(*args)
            self._running[key] = (name, coro)
            await coro
        except anyio.get_cancelled_exc_class():
            raise
        except BaseException as exc:  # SystemExit too: recorded by the owner, never lost
            self._on_error(name, exc)
        finally:
            del self._running[key]
            if self._changed is not None:
                self._changed.set()

    def interrupt(self) -> None:
        """A forced shutdown: stop waiting for tasks to end by themselves."""
        self._interrupted = True
        if self._changed is not None:
            self._changed.set()

    def stacks(self) -> str:
        return "".join(f"task {name}:\n{coroutine_stack(coro)}"
                       for name, coro in list(self._running.values()))

    async def close(self, deadline: float, grace: float) -> Result:
        """Give the tasks ``deadline`` seconds to end, then cancel, then abandon."""
        began = now()
        self._closed = True
        if self._job is None or self._release is None:  # nothing was ever spawned
            return Result(Outcome.OK, 0.0)
        end = began + deadline
        while self._running and not self._interrupted:
            remaining = end - now()
            if remaining <= 0:
                break
            with anyio.move_on_after(remaining):
                assert self._changed is not None
                await self._changed.wait()
            self._changed = anyio.Event()
        self._release.set()
        stack = None
        names = ""
        if self._running:
            names = ", ".join(sorted({name for name, _ in self._running.values()}))
            stack = self.stacks()
            self._job.cancel()
        with anyio.move_on_after(grace):
            await self._job.done.wait()
        elapsed = now() - began
        if not self._job.done.is_set():
            return Result(Outcome.ABANDONED, elapsed, RuntimeError(f"task(s) ignored cancellation: {names}"),
                          stack)
        if stack is not None:
            why = "forced" if self._interrupted else f"still running after {deadline:g}s"
            error = RuntimeError(f"cancelled task(s) {why}: {names}")
            return Result(Outcome.CANCELLED, elapsed, error, stack)
        if self._job.error is not None:
            return Result(Outcome.ERROR, elapsed, self._job.error)
        return Result(Outcome.OK, elapsed)


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
