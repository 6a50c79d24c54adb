"""The leak report: what a :class:`~lifecycle.leaks.LeakCheck` found, readable and JSON-safe.

Live threads, tasks and frames are turned into plain frozen dataclasses here, so a report
holds no reference to the objects it describes and can be logged, compared or serialised
long after they are gone.
"""

from __future__ import annotations

import linecache
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields, is_dataclass, replace
from types import FrameType
from typing import Any

from lifecycle import _taskhook as taskhook
from lifecycle import _threadhook as hook
from lifecycle._backend import Backend
from lifecycle._context import current_service
from lifecycle._qualname import frame_qualname
from lifecycle._threadhook import Origin, ThreadError, display_path
from lifecycle.redact import scrub

_QUIET = frozenset({"threading", "trio._core._traps"})  # not what "still in" should name


# -- report ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StackFrame:
    """One frame: display path, line, function qualname, module and source line."""

    file: str
    line: int
    function: str
    module: str | None = None
    code: str = ""

    def __str__(self) -> str:
        return f"{self.file}:{self.line} in {self.function}"

    @property
    def qualified(self) -> str:
        return f"{self.module}.{self.function}" if self.module else self.function

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "function": self.function,
            "module": self.module,
            "code": self.code,
        }


def _still_in(stack: tuple[StackFrame, ...]) -> str | None:
    """The innermost frame worth naming: past lock/condition waits and trio's traps."""
    stack = _trim(stack)
    for frame in reversed(stack):
        if frame.module not in _QUIET:
            return frame.qualified
    return stack[0].qualified if stack else None  # e.g. Event.wait as the thread's target


#: ``created_at`` of a task the supervisor started for a service.
BY_SUPERVISOR = "the supervisor (run(), a loop, a hook or spawn())"


def _origin_text(owner: str | None, created_at: str | None) -> str:
    if created_at == BY_SUPERVISOR:
        return f"started by {BY_SUPERVISOR}" + (f" for service `{owner}`" if owner else "")
    by = f" by service `{owner}`" if owner else ""
    at = f" at {created_at}" if created_at else " (origin unknown: started outside any check)"
    return f"started{by}{at}"


@dataclass(frozen=True)
class LeakedThread:
    """A thread started during the check and still alive after it."""

    name: str
    ident: int | None
    daemon: bool
    target: str | None
    owner: str | None
    created_at: str | None
    stack: tuple[StackFrame, ...]  # where it is now, innermost last
    creation_stack: tuple[StackFrame, ...] = ()  # where start() was called, innermost last

    @property
    def still_in(self) -> str | None:
        return _still_in(self.stack)

    def describe(self) -> str:
        kind = "daemon" if self.daemon else "non-daemon"
        where = f", still in `{self.still_in}`" if self.still_in else ""
        return f"thread `{self.name}` ({kind}) {_origin_text(self.owner, self.created_at)}{where}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ident": self.ident,
            "daemon": self.daemon,
            "target": self.target,
            "owner": self.owner,
            "created_at": self.created_at,
            "still_in": self.still_in,
            "stack": [f.to_dict() for f in self.stack],
            "creation_stack": [f.to_dict() for f in self.creation_stack],
        }


@dataclass(frozen=True)
class LeakedTask:
    """A task started during the check and still running after it."""

    name: str
    coro: str
    stack: tuple[StackFrame, ...]
    owner: str | None = None
    created_at: str | None = None
    creation_stack: tuple[StackFrame, ...] = ()

    @property
    def still_in(self) -> str | None:
        return _still_in(self.stack)

    def describe(self) -> str:
        where = f", still in `{self.still_in}`" if self.still_in else ""
        origin = _origin_text(self.owner, self.created_at)
        return f"task `{self.name}` ({self.coro}) {origin}{where}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "coro": self.coro,
            "owner": self.owner,
            "created_at": self.created_at,
            "still_in": self.still_in,
            "stack": [f.to_dict() for f in self.stack],
            "creation_stack": [f.to_dict() for f in self.creation_stack],
        }


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@dataclass(frozen=True)
class LeakReport:
    """What a :class:`LeakCheck` found. ``ok`` when nothing leaked and no thread crashed."""

    threads: tuple[LeakedThread, ...] = ()
    tasks: tuple[LeakedTask, ...] = ()
    thread_errors: tuple[ThreadError, ...] = ()
    settle: float = 0.0
    waited: float = 0.0  # seconds spent waiting for new threads/tasks to end
    thread_errors_omitted: int = 0  # beyond the last MAX_ERRORS kept: counted, not kept

    @property
    def ok(self) -> bool:
        return not (self.threads or self.tasks or self.thread_errors or self.thread_errors_omitted)

    def format(self, *, stacks: bool = True, max_frames: int = 6) -> str:
        """A readable message naming every culprit (and, with ``stacks``, where it is)."""
        if self.ok:
            return "leak check: clean"
        counts = [_plural(len(self.threads), "thread"), _plural(len(self.tasks), "task")]
        counts = [c for c in counts if not c.startswith("0 ")]
        lines = [
            "leak check: "
            + (
                f"{' and '.join(counts)} still running {self.waited:.2f} s after the check "
                f"ended (settle {self.settle:g} s)"
                if counts
                else f"{_plural(len(self.thread_errors), 'unhandled exception')} in threads"
            )
        ]
        leaks: list[LeakedThread | LeakedTask] = [*self.threads, *self.tasks]
        for leak in leaks:
            lines.append(f"- {leak.describe()}")
            if stacks:
                lines.extend(_format_stack(_trim(leak.stack)[-max_frames:], "    "))
        for error in self.thread_errors:
            owner = f" (service `{error.owner}`)" if error.owner else ""
            lines.append(f"- unhandled {error.type} in thread `{error.thread}`{owner}: {error.message}")
            if stacks:
                lines.extend("    " + line for line in error.traceback[-2 * max_frames :])
        if self.thread_errors_omitted:
            lines.append(f"- and {_plural(self.thread_errors_omitted, 'earlier unhandled exception')}"
                         " in threads, counted but not kept")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "settle": self.settle,
            "waited": self.waited,
            "threads": [t.to_dict() for t in self.threads],
            "tasks": [t.to_dict() for t in self.tasks],
            "thread_errors": [e.to_dict() for e in self.thread_errors],
            "thread_errors_omitted": self.thread_errors_omitted,
        }

    def redact(self, secrets: Iterable[str]) -> LeakReport:
        """A copy with every occurrence of ``secrets`` in any text replaced by ``***``."""
        words = [s for s in secrets if s]
        scrubbed: LeakReport = _scrub(self, words) if words else self
        return scrubbed


def _scrub(value: Any, words: list[str]) -> Any:
    if isinstance(value, str):
        return scrub(value, words)
    if isinstance(value, tuple):
        return tuple(_scrub(v, words) for v in value)
    if is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: _scrub(getattr(value, f.name), words) for f in fields(value)}
        return replace(value, **changes)
    return value


_BOOTSTRAP = frozenset({"_bootstrap", "_bootstrap_inner", "run"})


def _trim(stack: tuple[StackFrame, ...]) -> tuple[StackFrame, ...]:
    """Drop the thread bootstrap frames (threading's, before the target runs)."""
    start = 0
    while (
        start < len(stack) - 1
        and stack[start].module == "threading"
        and stack[start].function.rpartition(".")[2] in _BOOTSTRAP
    ):
        start += 1
    return stack[start:]


def _format_stack(stack: Iterable[StackFrame], indent: str) -> Iterator[str]:
    for frame in stack:
        yield f"{indent}{frame}"
        if frame.code:
            yield f"{indent}  {frame.code}"


# -- from live objects ----------------------------------------------------------------


def _stack(frames: Iterable[FrameType]) -> tuple[StackFrame, ...]:
    out = []
    for frame in frames:
        code = frame.f_code
        line = frame.f_lineno or 0
        out.append(
            StackFrame(
                display_path(code.co_filename),
                line,
                frame_qualname(frame),
                frame.f_globals.get("__name__"),
                linecache.getline(code.co_filename, line).strip(),
            )
        )
    return tuple(out)


def _sites(sites: Iterable[hook.Site]) -> tuple[StackFrame, ...]:
    return tuple(
        StackFrame(display_path(f), n, fn, None, linecache.getline(f, n).strip())
        for f, n, fn in reversed(tuple(sites))
    )


def _where(origin: Origin | None) -> tuple[str | None, tuple[StackFrame, ...]]:
    if origin is None:
        return None, ()
    if origin.site == hook.SUPERVISOR_SITE:
        return BY_SUPERVISOR, ()
    at = f"{display_path(origin.site[0])}:{origin.site[1]}" if origin.site else None
    return at, _sites(origin.stack)


def _callable_name(fn: Any) -> str | None:
    if fn is None:
        return None
    module = getattr(fn, "__module__", None)
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}.{name}" if module else name


_WRAPPERS = frozenset({"anyio._core._tasks"})  # modules whose coroutines wrap the real one


def _coro_name(coro: Any, frames: list[FrameType]) -> str:
    """The task's coroutine, seen through anyio's task wrapper."""
    for frame in frames:
        module = frame.f_globals.get("__name__")
        if module not in _WRAPPERS:
            name = frame_qualname(frame)
            return f"{module}.{name}" if module else name
    return _callable_name(coro) or repr(coro)


def leaked_thread(thread: threading.Thread, frames: list[FrameType]) -> LeakedThread:
    origin = hook.origin_of(thread)
    at, creation = _where(origin)
    target = getattr(thread, "_target", None)
    if target is None and type(thread).run is not threading.Thread.run:
        target = type(thread).run
    return LeakedThread(
        thread.name,
        thread.ident,
        thread.daemon,
        _callable_name(target),
        origin.owner if origin else None,
        at,
        _stack(frames),
        creation,
    )


def leaked_task(backend: Backend, task: Any, frames: list[FrameType]) -> LeakedTask:
    origin = taskhook.task_origins.get(task)
    at, creation = _where(origin)
    owner = origin.owner if origin else None
    context = backend.task_context(task)
    if owner is None and context is not None:
        owner = context.get(current_service)
    coro = backend.task_coro(task)
    return LeakedTask(backend.task_name(task), _coro_name(coro, frames), _stack(frames), owner, at,
                      creation)
