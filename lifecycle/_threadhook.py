"""Attribution hooks for leak checks: who started a thread or task, and from which line.

While at least one :class:`~lifecycle.leaks.LeakCheck` is active (checks and supervisors
share one reference count), ``threading.Thread.start`` is wrapped so every new thread
carries an :class:`Origin`: the service running at the time (the
``lifecycle._context.current_service`` context variable) and the user's line that started
it, found by walking a few frames past threading, the standard library, installed
packages and lifecycle itself. ``threading.excepthook`` is chained the same way so
unhandled exceptions in threads land in the report. Tasks get the same origin through an
asyncio task factory (chained to the loop's own) or a trio instrument, installed per event
loop while a check that began inside it is active.

The hook runs on every ``Thread.start`` of the process, so it only reads frame attributes
and stores raw tuples; paths are made readable when a report is built.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import threading
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any, NamedTuple

from lifecycle._context import current_service
from lifecycle._qualname import frame_qualname

Site = tuple[str, int, str]
"""A raw frame record: (filename, line number, function qualname)."""

MAX_STACK = 8  # frames kept of a creation stack
MAX_WALK = 64  # frames searched for the user's line
MAX_ERRORS = 1000  # thread exceptions kept while checks are active (the rest are counted)
MAX_ERROR_LINES = 200  # traceback lines kept per thread exception: the first 50, the last 150

_ORIGIN_ATTR = "_lifecycle_origin"
_HERE = os.path.abspath(__file__)
_PACKAGE_DIR = os.path.dirname(_HERE) + os.sep


class Origin(NamedTuple):
    """Where and by whom a thread or task was created (raw: cheap to build in the hook)."""

    owner: str | None
    site: Site | None  # the user's line; None when no frame qualified
    stack: tuple[Site, ...]  # innermost first, threading internals skipped


@dataclass(frozen=True)
class ThreadError:
    """An exception that escaped a thread's ``run()`` while a check was active."""

    thread: str
    ident: int | None
    owner: str | None
    type: str
    message: str
    traceback: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "thread": self.thread,
            "ident": self.ident,
            "owner": self.owner,
            "type": self.type,
            "message": self.message,
            "traceback": list(self.traceback),
        }


# -- classifying frames ---------------------------------------------------------------

_SKIP, _STDLIB, _LIB, _USER = 0, 1, 2, 3  # _LIB: installed packages and lifecycle itself


def _dirs(*dirs: str) -> tuple[str, ...]:
    unique = {os.path.abspath(d) + os.sep for d in dirs if d}
    return tuple(sorted(unique, key=len, reverse=True))  # longest (most specific) first


_PATHS = sysconfig.get_paths()
_SITE_DIRS = _dirs(
    _PATHS.get("purelib", ""),
    _PATHS.get("platlib", ""),
    *(p for p in sys.path if "site-packages" in p or "dist-packages" in p),
)
_STD_DIRS = _dirs(_PATHS.get("stdlib", ""), _PATHS.get("platstdlib", ""))
_LIB_DIRS = _dirs(*_SITE_DIRS, *_STD_DIRS)
_kinds: dict[str, int] = {threading.__file__: _SKIP, _HERE: _SKIP}  # one per source file seen


def _classify(filename: str) -> int:
    kind = _kinds.get(filename)
    if kind is None:
        path = os.path.abspath(filename)
        if filename.startswith("<"):
            kind = _STDLIB if filename.startswith("<frozen") else _USER
        elif path.startswith(_PACKAGE_DIR) or path.startswith(_SITE_DIRS):
            kind = _LIB
        elif path.startswith(_STD_DIRS):
            kind = _STDLIB
        else:
            kind = _USER
        _kinds[filename] = kind
    return kind


def is_user_file(filename: str) -> bool:
    """The application's code: not the standard library, installed packages or lifecycle."""
    return _classify(filename) == _USER


def display_path(filename: str) -> str:
    """A short path: relative to the working directory, or to the library directory."""
    path = os.path.abspath(filename)
    cwd = os.getcwd() + os.sep
    if path.startswith(cwd) and not path.startswith(_LIB_DIRS):
        return path[len(cwd) :]
    for lib in _LIB_DIRS:
        if path.startswith(lib):
            return path[len(lib) :]
    return filename


def capture(frame: FrameType | None,
            internal: frozenset[str] = frozenset()) -> tuple[Site | None, tuple[Site, ...]]:
    """Walk outwards from ``frame``: the first user frame and a short stack.

    Reaching a file in ``internal`` first ends the walk with no site: the thing was made by
    the supervisor's own machinery, whose creation site tells a user nothing.
    """
    stack: list[Site] = []
    site: Site | None = None
    fallback: Site | None = None
    walked = 0
    while frame is not None and walked < MAX_WALK:
        code = frame.f_code
        if code.co_filename in internal:
            return None, ()
        kind = _kinds.get(code.co_filename)
        if kind is None:
            kind = _classify(code.co_filename)
        if kind:  # not threading / this module
            rec = (code.co_filename, frame.f_lineno, frame_qualname(frame))
            if len(stack) < MAX_STACK:
                stack.append(rec)
            if kind == _USER:
                site = rec
                break
            if kind == _LIB and fallback is None:
                fallback = rec  # no user frame: name the innermost library that did it
        frame = frame.f_back
        walked += 1
    if site is None:
        site = fallback if fallback is not None else (stack[0] if stack else None)
    return site, tuple(stack)


def _owner_now() -> str | None:
    owner = current_service.get()
    if owner is None:  # a thread started by a thread inherits its starter's owner
        parent = getattr(threading.current_thread(), _ORIGIN_ATTR, None)
        if parent is not None:
            owner = parent.owner
    return owner


def record_origin(thread: threading.Thread) -> None:
    """Attach an :class:`Origin` to ``thread``: the per-``start()`` cost of the hook."""
    site, stack = capture(sys._getframe(2))
    try:  # noqa: SIM105 (hot path: no context manager)
        setattr(thread, _ORIGIN_ATTR, Origin(_owner_now(), site, stack))
    except AttributeError:  # a Thread subclass with __slots__
        pass


def origin_of(thread: threading.Thread) -> Origin | None:
    return getattr(thread, _ORIGIN_ATTR, None)


#: The supervisor's own task bodies. Their creation site says nothing to a user (it is
#: always the supervisor), so it is not captured: a stack walk per task was most of the
#: cost of starting and stopping a thousand services.
_INTERNAL_CODE = frozenset(
    os.path.join(os.path.dirname(__file__), name)
    for name in ("_bounded.py", "_work.py", "_runtime.py", "supervisor.py", "_monitor.py"))


#: The site of a task the supervisor itself started (a service's run(), loop, hook or
#: spawn() task): its origin is known, it is just not a line of the user's.
SUPERVISOR_SITE: Site = ("<lifecycle supervisor>", 0, "supervisor")


def capture_origin(owner: str | None, coro: Any = None, depth: int = 2) -> Origin:
    """Origin of something created by the caller's caller (used for tasks); ``depth``
    counts the frames to skip, this one included."""
    owner = owner if owner is not None else _owner_now()
    code = getattr(coro, "cr_code", None)
    if code is not None and code.co_filename in _INTERNAL_CODE:
        return Origin(owner, SUPERVISOR_SITE, ())
    site, stack = capture(sys._getframe(depth), _INTERNAL_CODE)
    if site is None and not stack:  # the walk reached the supervisor's own machinery
        return Origin(owner, SUPERVISOR_SITE, ())
    return Origin(owner, site, stack)


# -- installing and removing ----------------------------------------------------------

_lock = threading.Lock()
_active = 0
_saved_start: Callable[[threading.Thread], None] | None = None
_saved_excepthook: Callable[[threading.ExceptHookArgs], Any] | None = None
_errors: deque[tuple[int, ThreadError]] = deque(maxlen=MAX_ERRORS)
_error_seq = 0


_ORIGINAL_START = threading.Thread.start


def _hooked_start(self: threading.Thread) -> None:
    if _active:
        record_origin(self)
    start = _saved_start if _saved_start is not None else _ORIGINAL_START
    start(self)


_hooked_start.__doc__ = _ORIGINAL_START.__doc__


def _excepthook(args: threading.ExceptHookArgs) -> None:
    global _error_seq
    previous = _saved_excepthook if _saved_excepthook is not None else threading.__excepthook__
    if args.exc_type is SystemExit:  # how a thread may end on purpose: not an error
        previous(args)
        return
    thread = args.thread
    origin = origin_of(thread) if thread is not None else None
    lines = "".join(traceback.format_exception(args.exc_type, args.exc_value,
                                               args.exc_traceback)).splitlines()
    if len(lines) > MAX_ERROR_LINES:
        cut = len(lines) - MAX_ERROR_LINES
        lines = [*lines[:50], f"... {cut} lines left out ...", *lines[50 + cut:]]
    error = ThreadError(
        thread=thread.name if thread is not None else "?",
        ident=thread.ident if thread is not None else None,
        owner=origin.owner if origin is not None else None,
        type=getattr(args.exc_type, "__qualname__", str(args.exc_type)),
        message=str(args.exc_value),
        traceback=tuple(lines),
    )
    with _lock:
        _error_seq += 1
        _errors.append((_error_seq, error))
    previous(args)


def acquire() -> int:
    """Count one more active check; install the hooks on the first. Returns an error mark."""
    global _active, _saved_start, _saved_excepthook
    with _lock:
        if _active == 0:
            # _saved_* stays set while our wrapper is still somewhere in the chain (someone
            # wrapped it after us, so it could not be removed): never wrap ourselves twice.
            if _saved_start is None:
                _saved_start = threading.Thread.start
                setattr(threading.Thread, "start", _hooked_start)  # noqa: B010
            if _saved_excepthook is None:
                _saved_excepthook = threading.excepthook
                threading.excepthook = _excepthook
        _active += 1
        return _error_seq


def release() -> None:
    """Count one check less; restore what was there when the last one ends."""
    global _active, _saved_start, _saved_excepthook
    with _lock:
        if _active == 0:
            return
        _active -= 1
        if _active:
            return
        if _is_ours(threading.Thread.start) and _saved_start is not None:
            setattr(threading.Thread, "start", _saved_start)  # noqa: B010
            _saved_start = None
        if threading.excepthook is _excepthook and _saved_excepthook is not None:
            threading.excepthook = _saved_excepthook
            _saved_excepthook = None
        _errors.clear()


def _is_ours(start: object) -> bool:
    return start is _hooked_start


def errors_since(mark: int) -> list[ThreadError]:
    with _lock:
        return [error for seq, error in _errors if seq > mark]


def dropped_since(mark: int) -> int:
    """Thread exceptions since ``mark`` no longer kept (more than ``MAX_ERRORS``): counted."""
    with _lock:
        return max(0, _error_seq - mark - sum(1 for seq, _ in _errors if seq > mark))
