"""Stack dump on demand: ``kill -USR1 <pid>`` logs what every task and thread is doing.

The answer to "the process is up but does nothing: where is it?" without stopping it.
``Supervisor.run()``/``serve()`` install it for ``stack_dump_signal`` (SIGUSR1 by default;
``None`` turns it off; absent on platforms without the signal) when they handle signals.
The handler runs on the main thread between two bytecodes, even while a blocking call
holds the event loop, reads every stack and logs one WARNING record on
``lifecycle.stackdump``: each task (asyncio or trio) and each thread with its owning
service and its stack. Nothing is cancelled or paused beyond the time the dump takes.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any

from . import _backend
from ._context import current_service
from ._threadhook import origin_of
from .stacks import coroutine_frames, format_frames, owner_of, service_owners, thread_frames

if TYPE_CHECKING:
    from .supervisor import Supervisor

__all__ = ["DEFAULT_SIGNAL", "StackDump", "dump_stacks"]

log = logging.getLogger("lifecycle.stackdump")

#: SIGUSR1 where the platform has it, else None (the dump is off).
DEFAULT_SIGNAL: int | None = getattr(signal, "SIGUSR1", None)


def _tasks() -> Iterator[tuple[str, Any, Any]]:
    """(name, coroutine, context or None) of every task of the running loop, if any."""
    backend = _backend.running()
    if backend is None:
        return
    for task in backend.all_tasks():
        yield backend.task_name(task), backend.task_coro(task), backend.task_context(task)


def dump_stacks(owners: dict[int, str] | None = None) -> str:
    """Every task of the running loop and every thread, each with its owning service and
    stack, as text. Call it on the event loop's thread."""
    owners = owners or {}
    parts: list[str] = []
    tasks = sorted(_tasks(), key=lambda t: t[0])
    for name, coro, context in tasks:
        frames = coroutine_frames(coro)
        owner = (context.get(current_service) if context is not None else None) \
            or owner_of(frames, owners)
        stack = format_frames(frames) if frames else "  (not started or finished)\n"
        parts.append(f"task {name!r}" + (f" of service {owner!r}" if owner else "")
                     + f":\n{stack}")
    threads = {t.ident: t for t in threading.enumerate()}
    current = sys._current_frames()
    for ident, frame in sorted(current.items()):
        thread = threads.get(ident)
        frames = thread_frames(frame, sys.maxsize)
        origin = origin_of(thread) if thread is not None else None
        owner = owner_of(frames, owners) or (origin.owner if origin is not None else None)
        label = thread.name if thread is not None else f"thread {ident}"
        parts.append(f"thread {label!r}" + (f" of service {owner!r}" if owner else "")
                     + f":\n{format_frames(frames)}")
    header = f"stack dump: {len(tasks)} task(s), {len(current)} thread(s)"
    return header + "\n" + "\n".join(parts)


class StackDump:
    """Logs :func:`dump_stacks` when ``signum`` arrives; ``attach`` installs the handler
    (main thread only) and the returned function restores the previous one."""

    def __init__(self, signum: int | None = DEFAULT_SIGNAL) -> None:
        self.signum = signum
        self.sup: Supervisor | None = None
        self.dumps = 0

    def attach(self, sup: Supervisor | None) -> Callable[[], None] | None:
        if self.signum is None or threading.current_thread() is not threading.main_thread():
            return None
        self.sup = sup
        previous = signal.signal(self.signum, self._handle)
        signum = self.signum

        def detach() -> None:
            if signal.getsignal(signum) == self._handle:
                signal.signal(signum, previous)
        return detach

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.dumps += 1
        try:
            text = dump_stacks(service_owners(self.sup.services) if self.sup is not None else {})
        except Exception:  # a dump must never take the app down
            log.exception("stack dump failed")
            return
        log.warning("%s", self.sup.scrub(text) if self.sup is not None else text)
