"""Leak checks: threads and tasks still alive after the code that started them is done.

A :class:`LeakCheck` snapshots the threads and tasks alive when it begins; when it ends it
waits up to ``settle`` seconds for the new ones to finish (returning at once when there
are none, so a clean check costs microseconds), then reports the rest, each with the
service that started it, the user's line that did, and where it is stuck now. Ignore
rules work like goleak's: by name, by a function anywhere in the stack, and "idle pool
worker" (parked waiting for work). Report types live in :mod:`lifecycle._leakreport`,
attribution hooks in :mod:`lifecycle._threadhook`.
"""

from __future__ import annotations

import fnmatch
import re
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import Any

from lifecycle import _backend
from lifecycle import _taskhook as taskhook
from lifecycle import _threadhook as hook
from lifecycle._backend import Backend
from lifecycle._leakreport import (
    LeakedTask,
    LeakedThread,
    LeakReport,
    StackFrame,
    leaked_task,
    leaked_thread,
)
from lifecycle._threadhook import ThreadError
from lifecycle.stacks import MAX_FRAMES, coroutine_frames, frame_names, thread_frames

__all__ = [
    "DEFAULT_IGNORE",
    "IgnoreFunction",
    "IgnoreIdle",
    "IgnoreName",
    "IgnoreRule",
    "LeakCheck",
    "LeakReport",
    "LeakedTask",
    "LeakedThread",
    "StackFrame",
    "ThreadError",
]

# -- ignore rules ---------------------------------------------------------------------


@dataclass(frozen=True)
class IgnoreName:
    """Ignore threads and tasks whose name matches: a glob string or a compiled regex."""

    pattern: str | re.Pattern[str]

    def matches(self, name: str) -> bool:
        if isinstance(self.pattern, re.Pattern):
            return self.pattern.search(name) is not None
        return fnmatch.fnmatchcase(name, self.pattern)


@dataclass(frozen=True)
class IgnoreFunction:
    """Ignore threads and tasks with this function anywhere in their current stack.

    ``name`` matches a frame's function (``get``), qualname (``Queue.get``) or either
    with its module (``queue.get``, ``queue.Queue.get``).
    """

    name: str

    def matches(self, frames: Iterable[FrameType]) -> bool:
        return any(self.name in frame_names(frame) for frame in frames)


@dataclass(frozen=True)
class IgnoreIdle:
    """Ignore a pool worker thread while it is parked waiting for work.

    Matches a thread named like ``name`` (glob) whose innermost frame, past ``threading``
    internals, is ``function`` (a code name) of ``module``. With ``waiting_in`` (a frame's
    ``module.qualname``, e.g. ``"queue.Queue.get"``) that innermost frame must be this
    wait, called directly from ``function``: a worker that is *busy* (running a blocking
    call from the same function) is then told from an idle one by what it waits in.
    """

    name: str
    module: str
    function: str
    waiting_in: str = ""

    def names(self, name: str) -> bool:
        return fnmatch.fnmatchcase(name, self.name)

    def matches(self, name: str, frames: list[FrameType]) -> bool:
        return self.matches_innermost(name, frames[-1] if frames else None)

    def matches_innermost(self, name: str, frame: FrameType | None) -> bool:
        """:meth:`matches`, walking out from the thread's innermost frame (no stack built:
        this runs for every pool worker at every check)."""
        if not self.names(name):
            return False
        while frame is not None and frame.f_globals.get("__name__") == "threading":
            frame = frame.f_back
        if self.waiting_in:
            if frame is None or frame_names(frame)[3] != self.waiting_in:
                return False
            frame = frame.f_back
        return (frame is not None and frame.f_globals.get("__name__") == self.module
                and frame.f_code.co_name == self.function)


IgnoreRule = IgnoreName | IgnoreFunction | IgnoreIdle

DEFAULT_IGNORE: tuple[IgnoreRule, ...] = (
    IgnoreIdle("AnyIO worker thread", "anyio._backends._asyncio", "run", "queue.Queue.get"),
    IgnoreIdle("asyncio_*", "concurrent.futures.thread", "_worker"),  # default executor
    IgnoreIdle("Trio thread *", "trio._core._thread_cache", "_work"),
    # trio's I/O wait when it runs as a guest (``Supervisor.run(backend="trio")``)
    IgnoreIdle("Trio thread *", "trio._core._io_epoll", "get_events"),
    IgnoreIdle("Trio thread *", "trio._core._io_kqueue", "get_events"),
)
"""Idle workers of anyio's, asyncio's default and trio's thread pools are not leaks."""


def as_rule(rule: str | re.Pattern[str] | IgnoreRule) -> IgnoreRule:
    """A string is a name glob, a compiled regex a name pattern; rules pass through."""
    if isinstance(rule, (str, re.Pattern)):
        return IgnoreName(rule)
    if isinstance(rule, (IgnoreName, IgnoreFunction, IgnoreIdle)):
        return rule
    raise TypeError(f"not an ignore rule: {rule!r}")


# -- the check ------------------------------------------------------------------------


@dataclass
class _Found:
    threads: list[tuple[threading.Thread, list[FrameType]]] = field(default_factory=list)
    tasks: list[tuple[Any, list[FrameType]]] = field(default_factory=list)


class LeakCheck:
    """Snapshot threads and tasks, then report the new ones still alive at the end.

    Use ``with``/``async with``, or call :meth:`begin` then :meth:`finish` (async, waits
    without blocking the loop) or :meth:`finish_sync`. Checks nest and overlap freely.
    """

    def __init__(
        self,
        settle: float = 1.0,
        ignore: Iterable[str | re.Pattern[str] | IgnoreRule] = (),
        *,
        defaults: bool = True,
        threads: bool = True,
        tasks: bool = True,
    ) -> None:
        if not settle >= 0:
            raise ValueError(f"settle must be >= 0, got {settle!r}")
        self.settle = settle
        self.rules = (*(DEFAULT_IGNORE if defaults else ()), *map(as_rule, ignore))
        self._check_threads, self._check_tasks = threads, tasks
        self._name_rules = [r for r in self.rules if isinstance(r, IgnoreName)]
        self._stack_rules = [r for r in self.rules if not isinstance(r, IgnoreName)]
        self._pools = [r for r in self.rules if isinstance(r, IgnoreIdle)]
        # plain sets (a WeakSet costs ~0.2 us per member and per lookup); emptied at finish
        self._threads: set[threading.Thread] = set()
        self._tasks: set[Any] = set()
        self._backend: Backend | None = None
        self._hook_key: object = None
        self._mark = 0
        self._active = False
        self._report: LeakReport | None = None

    # context managers
    def __enter__(self) -> LeakCheck:
        return self.begin()

    def __exit__(self, *exc: object) -> None:
        self.finish_sync()

    async def __aenter__(self) -> LeakCheck:
        return self.begin()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.finish()

    # explicit API
    def begin(self) -> LeakCheck:
        """Install the attribution hooks and take the snapshot."""
        if self._active:
            raise RuntimeError("LeakCheck.begin() called twice without finish()")
        self._mark = hook.acquire()
        self._active, self._report = True, None
        self._threads = self._snapshot_threads()
        backend = _backend.current() if self._check_tasks else None
        self._backend = backend
        if backend is not None:
            self._tasks = set(backend.all_tasks())
            self._hook_key = taskhook.acquire_task_hook(backend)
        return self

    def _snapshot_threads(self) -> set[threading.Thread]:
        """Threads alive now, less the pool workers (named like an ``IgnoreIdle`` rule): a
        pool hands them new work, so whether they leak is decided by what they are doing
        at the end (idle: ignored; busy: reported), not by when they were started."""
        return {t for t in threading.enumerate() if not any(r.names(t.name) for r in self._pools)}

    def exclude(self, *items: Any) -> None:
        """Never report these threads or tasks: treat them as alive at the snapshot."""
        for item in items:
            (self._threads if isinstance(item, threading.Thread) else self._tasks).add(item)

    async def finish(self, settle: float | None = None) -> LeakReport:
        """Wait up to ``settle`` (default: the constructor's) for new threads and tasks to
        end, sleeping on the running loop so they can; then report the rest."""
        sleep = self._sleeper()
        if sleep is None:
            return self.finish_sync(settle)
        began, limit = time.monotonic(), self._limit(settle)
        found, delay = self._scan(), 0.001
        try:
            while (found.threads or found.tasks) and time.monotonic() - began < limit:
                await sleep(min(delay, max(0.0, limit - (time.monotonic() - began))))
                found, delay = self._scan(), min(delay * 2, 0.05)
        except BaseException:
            self._release()  # cancelled while settling: still restore the hooks
            raise
        return self._conclude(found, limit, time.monotonic() - began)

    def finish_sync(self, settle: float | None = None) -> LeakReport:
        """Like :meth:`finish`, blocking (tasks of a running loop cannot progress meanwhile)."""
        began, limit = time.monotonic(), self._limit(settle)
        found, delay = self._scan(), 0.001
        while (found.threads or found.tasks) and time.monotonic() - began < limit:
            time.sleep(min(delay, max(0.0, limit - (time.monotonic() - began))))
            found, delay = self._scan(), min(delay * 2, 0.05)
        return self._conclude(found, limit, time.monotonic() - began)

    @property
    def report(self) -> LeakReport:
        if self._report is None:
            raise RuntimeError("the leak check has not finished yet")
        return self._report

    def assert_clean(self) -> None:
        """Raise ``AssertionError`` with the formatted report unless nothing leaked."""
        if not self.report.ok:
            raise AssertionError(self.report.format())

    # internals
    def _sleeper(self) -> Callable[[float], Awaitable[None]] | None:
        backend = _backend.current()
        return None if backend is None else backend.sleep

    def _limit(self, settle: float | None) -> float:
        if self._report is not None and not self._active:
            raise RuntimeError("this LeakCheck already finished; begin() it again first")
        if not self._active:
            raise RuntimeError("LeakCheck.finish() without begin()")
        return self.settle if settle is None else max(0.0, settle)

    def _ignored(self, name: str, frames: list[FrameType], is_thread: bool) -> bool:
        if any(rule.matches(name) for rule in self._name_rules):
            return True
        for rule in self._stack_rules:
            if isinstance(rule, IgnoreIdle):
                if is_thread and rule.matches(name, frames):
                    return True
            elif rule.matches(frames):
                return True
        return False

    def _scan(self) -> _Found:
        found = _Found()
        if self._check_threads:
            me, snapshot = threading.current_thread(), self._threads
            new = [
                t
                for t in threading.enumerate()
                if t not in snapshot and t is not me and not isinstance(t, threading._DummyThread)
            ]
            if new:
                current = sys._current_frames()
                for thread in new:
                    innermost = current.get(thread.ident or 0)
                    if not thread.is_alive() or any(
                            r.matches_innermost(thread.name, innermost) for r in self._pools):
                        continue  # an idle pool worker: decided without building its stack
                    frames = thread_frames(innermost)
                    if not self._ignored(thread.name, frames, True):
                        found.threads.append((thread, frames))
        backend = self._backend
        if backend is not None and _backend.current() is backend:
            me = backend.current_task()
            for task in backend.all_tasks():
                if task in self._tasks or task is me:
                    continue
                frames = coroutine_frames(backend.task_coro(task), MAX_FRAMES)
                if not self._ignored(backend.task_name(task), frames, False):
                    found.tasks.append((task, frames))
        return found

    def _release(self) -> None:
        if self._active:
            self._active = False
            if self._hook_key is not None:
                taskhook.release_task_hook(self._hook_key)
                self._hook_key = None
            hook.release()
            self._threads, self._tasks = set(), set()  # hold no thread or task past the check

    def _conclude(self, found: _Found, settle: float, waited: float) -> LeakReport:
        errors = tuple(hook.errors_since(self._mark)) if self._check_threads else ()
        dropped = hook.dropped_since(self._mark) if self._check_threads else 0
        self._release()
        threads = tuple(leaked_thread(t, frames) for t, frames in found.threads)
        backend = self._backend  # found.tasks is empty without one
        tasks = () if backend is None else tuple(leaked_task(backend, t, frames)
                                                 for t, frames in found.tasks)
        self._report = LeakReport(threads, tasks, errors, settle, waited, dropped)
        return self._report
