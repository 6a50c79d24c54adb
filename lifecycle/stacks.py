"""Stack walking, in one place: where a coroutine, a task or a thread is now, how to show it,
and which service's code is on it.

Used by the job runner (the stack of an abandoned hook), the close (threads still running),
the leak checks (leaked threads and tasks, ignore rules that match a function), the blocking
detector (the loop thread's stack, read from its watchdog thread) and the stack dump. The
owning service is found in the frames themselves: the innermost frame whose ``self`` is one
of the supervisor's services (or Fallback candidates). That works the same on asyncio and
trio and from any thread, where the ``current_service`` context variable of another thread
cannot be read.
"""

from __future__ import annotations

import keyword
import linecache
import os
import re
import sys
import threading
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from types import FrameType
from typing import Any, Protocol

from ._qualname import frame_qualname
from ._threadhook import display_path, is_user_file
from .records import whereabouts

__all__ = ["MAX_FRAMES", "Culprit", "call_at", "coroutine_frames", "coroutine_stack",
           "culprit_of", "format_frames", "frame_names", "owner_of", "service_owners",
           "thread_frames", "thread_stacks"]

#: Frames kept of a leaked thread's or task's current stack.
MAX_FRAMES = 40


def coroutine_frames(coro: object, limit: int = sys.maxsize) -> list[FrameType]:
    """A suspended coroutine's ``await`` chain (cr_await / gi_yieldfrom / ag_await), outermost
    first, at most ``limit`` frames."""
    frames: list[FrameType] = []
    seen: set[int] = set()
    obj: Any = coro
    while obj is not None and id(obj) not in seen and len(frames) < limit:
        seen.add(id(obj))
        frame = (getattr(obj, "cr_frame", None) or getattr(obj, "gi_frame", None)
                 or getattr(obj, "ag_frame", None))
        if frame is not None:
            frames.append(frame)
        obj = (getattr(obj, "cr_await", None) or getattr(obj, "gi_yieldfrom", None)
               or getattr(obj, "ag_await", None))
    return frames


def thread_frames(frame: FrameType | None, limit: int = MAX_FRAMES) -> list[FrameType]:
    """The stack ending at ``frame`` (a thread's innermost), outermost first, at most
    ``limit`` frames (the innermost ones)."""
    frames: list[FrameType] = []
    while frame is not None and len(frames) < limit:
        frames.append(frame)
        frame = frame.f_back
    frames.reverse()
    return frames


def frame_names(frame: FrameType) -> tuple[str, str, str, str]:
    """The names a frame answers to: function, qualname, and each with its module."""
    code = frame.f_code
    qualname = frame_qualname(frame)
    module = frame.f_globals.get("__name__", "")
    return code.co_name, qualname, f"{module}.{code.co_name}", f"{module}.{qualname}"


_LIBRARY_PARTS = (f"{os.sep}anyio{os.sep}", f"{os.sep}trio{os.sep}", f"{os.sep}asyncio{os.sep}",
                  f"{os.sep}lifecycle{os.sep}_")


def format_frames(frames: list[FrameType]) -> str:
    """Format a stack, dropping event-loop plumbing after the user's innermost frame.

    The last library call is kept as one line ("still in anyio.sleep") so the reader sees
    what the user's code was waiting on without forty lines of trio internals.
    """
    keep: list[FrameType] = []
    tail: FrameType | None = None
    for frame in frames:
        if any(part in frame.f_code.co_filename for part in _LIBRARY_PARTS):
            if tail is None and keep:
                tail = frame
            continue
        keep.append(frame)
        tail = None
    summary = traceback.StackSummary.extract((f, f.f_lineno) for f in keep or frames)
    text = "".join(summary.format())
    if tail is not None and keep:
        module = tail.f_globals.get("__name__", "?")
        text += f"  ... waiting in {module}.{tail.f_code.co_name}\n"
    return text


def coroutine_stack(coro: object) -> str:
    """Where a suspended coroutine is stuck, formatted (see :func:`format_frames`)."""
    return format_frames(coroutine_frames(coro))


def thread_stacks(threads: list[threading.Thread]) -> str:
    """Each thread's name and full current stack, for a report."""
    frames = sys._current_frames()
    parts = []
    for t in threads:
        frame = frames.get(t.ident or -1)
        where = "".join(traceback.format_stack(frame)) if frame is not None else "  (no stack)\n"
        parts.append(f"thread {t.name}:\n{where}")
    return "".join(parts)


_LIFECYCLE = os.path.dirname(os.path.abspath(__file__)) + os.sep


@dataclass(frozen=True)
class Culprit:
    """Where a thread is: the owning service, the user's ``file:line``, the call it is in."""

    service: str | None
    where: str
    call: str
    stack: str

    def describe(self) -> str:
        """``in service 'ingest' at app.py:42 in time.sleep``."""
        return whereabouts(self.service, self.where, self.call)


class Owner(Protocol):
    """A service as stack walking names it (a ``Service``, which this module must not
    import: the services' modules are above it)."""

    @property
    def name(self) -> str: ...
    def members(self) -> Iterable[Owner]: ...


def service_owners(services: Iterable[Owner]) -> dict[int, str]:
    """``id(object) -> service name`` for every service and its members (a Fallback's
    candidates)."""
    owners: dict[int, str] = {}
    for svc in services:
        owners[id(svc)] = svc.name
        for member in svc.members():
            owners[id(member)] = svc.name
    return owners


def owner_of(frames: list[FrameType], owners: dict[int, str]) -> str | None:
    """The service of the innermost frame that is a method of one (``frames`` outermost first)."""
    for frame in reversed(frames):
        code = frame.f_code
        if code.co_argcount and code.co_varnames[0] in ("self", "svc"):
            name = owners.get(id(frame.f_locals.get(code.co_varnames[0])))
            if name is not None:
                return name
    return None


def call_at(frame: FrameType) -> str:
    """The call ``frame`` is executing (``time.sleep``), or its function's name."""
    try:
        positions = list(frame.f_code.co_positions())  # Python 3.11+
        line, end_line, col, end_col = positions[frame.f_lasti // 2]
    except (AttributeError, IndexError):
        return _first_call_on_line(frame)
    if line is None or col is None:
        return frame.f_code.co_name
    source = linecache.getline(frame.f_code.co_filename, line).encode()
    stop = end_col if end_line == line and end_col is not None else len(source)
    text = source[col:stop].decode(errors="replace")
    if "(" not in text:
        return frame.f_code.co_name
    callee = text.split("(", 1)[0].strip().removeprefix("await ").strip()
    return callee or frame.f_code.co_name


def _first_call_on_line(frame: FrameType) -> str:
    """Python 3.10 has no column positions: the first call written on the frame's line."""
    source = linecache.getline(frame.f_code.co_filename, frame.f_lineno)
    for match in re.finditer(r"([A-Za-z_][\w.]*)\s*\(", source):
        if not keyword.iskeyword(match.group(1)):
            return match.group(1)
    return frame.f_code.co_name


#: (file name ending, function) of the frame that hands control to a task or callback.
_DISPATCH = ((os.path.join("asyncio", "events.py"), "_run"),
             (os.path.join("trio", "_core", "_run.py"), "unrolled_run"))


def _inside_loop(frames: list[FrameType]) -> list[FrameType]:
    """The frames the event loop is running (below its dispatch frame), or all of them."""
    for i in range(len(frames) - 1, -1, -1):
        code = frames[i].f_code
        if any(code.co_filename.endswith(end) and code.co_name == name for end, name in _DISPATCH):
            return frames[i + 1:] or frames
    return frames


def culprit_of(frame: FrameType | None, owners: dict[int, str]) -> Culprit:
    """Who holds the thread whose innermost frame is ``frame``: its service, the innermost
    frame of user code that the loop is running (not the standard library, installed
    packages or lifecycle; lifecycle's own frame when no user code is there) and the call
    made there."""
    frames = thread_frames(frame, sys.maxsize)
    if not frames:
        return Culprit(None, "?", "?", "")
    stack = format_frames(frames)
    running = _inside_loop(frames)
    user = next((f for f in reversed(running) if is_user_file(f.f_code.co_filename)), None) or next(
        (f for f in reversed(running) if f.f_code.co_filename.startswith(_LIFECYCLE)),
        running[-1])
    where = f"{display_path(user.f_code.co_filename)}:{user.f_lineno}"
    return Culprit(owner_of(frames, owners), where, call_at(user), stack)
