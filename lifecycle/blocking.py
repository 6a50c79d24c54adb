"""The blocking detector: a watchdog thread that names the code holding the event loop.

A ``time.sleep``, a sync database driver or a long computation inside a coroutine stops
every other task; from outside, the process just goes quiet (and under systemd, its
watchdog kills it without a word). The detector is a daemon thread that wakes every
``interval``, checks that the probe it posted into the loop last time has run, and posts
the next. When a probe has waited ``threshold`` seconds, the thread captures the loop
thread's stack
*while it is still blocked*, finds the service whose code is on it, and logs one WARNING
line with the stack. When the loop turns again the incident is recorded on the loop: a
:class:`~lifecycle.events.LoopBlocked` event (metrics count it) and a line in the report.

Cost: one thread wake-up and one loop wake-up per ``interval`` (0.1 s at most), nothing
per task.
Where a systemd watchdog is configured, the threshold is lowered to a quarter of its
timeout, so the stack is in the log before systemd would kill the process.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from . import _backend
from .events import LoopBlocked
from .report import BlockedLoop
from .stacks import Culprit, culprit_of, service_owners
from .systemd import watchdog_interval

if TYPE_CHECKING:
    from .supervisor import Supervisor

__all__ = ["BlockingDetector", "loop_poster"]

log = logging.getLogger("lifecycle.blocking")

#: The longest pause between two probes of the loop (seconds).
MAX_INTERVAL = 0.1


Poster = Callable[[Callable[[], object]], object]


def loop_poster() -> Poster:
    """A thread-safe ``post(callback)`` into the running loop, to call from another thread;
    it never waits for the callback to run."""
    backend = _backend.running()
    if backend is None:
        raise RuntimeError("the blocking detector must be started inside a running event loop")
    return backend.loop_poster()


class _Probe:
    """A no-op the loop runs when it gets to it; ``ran_at`` says when (None: not yet)."""

    __slots__ = ("posted", "ran_at")

    def __init__(self, posted: float) -> None:
        self.posted = posted
        self.ran_at: float | None = None

    def run(self) -> None:
        self.ran_at = time.monotonic()


class BlockingDetector:
    """Names a blocked loop; ``Supervisor(blocking_threshold=...)`` attaches one per run.

    Standalone use (outside a supervisor): ``detach = BlockingDetector(0.5).attach(None)``
    inside the loop, and ``detach()`` when done.
    """

    def __init__(self, threshold: float = 0.5, *, environ: dict[str, str] | None = None) -> None:
        watchdog = watchdog_interval(os.environ if environ is None else environ)
        if watchdog is not None:  # pings every W/2; systemd fires W after the last one
            threshold = min(threshold, watchdog / 2)
        self.threshold = threshold
        self.interval = min(threshold / 5, MAX_INTERVAL)
        self.incidents = 0
        self._stop = threading.Event()
        self._probe: _Probe | None = None  # the last probe posted (written by the thread)
        self._culprit: Culprit | None = None  # the incident in progress, once logged
        self._thread: threading.Thread | None = None
        self._sup: Supervisor | None = None

    def __repr__(self) -> str:
        return f"<BlockingDetector threshold={self.threshold:g}s incidents={self.incidents}>"

    def attach(self, sup: Supervisor | None) -> Callable[[], None]:
        """Start watching the running loop (call it on the loop); returns ``detach``."""
        self._sup = sup
        post = loop_poster()
        loop_thread = threading.get_ident()
        self._thread = threading.Thread(target=self._watch, args=(post, loop_thread),
                                        name="lifecycle.blocking-detector", daemon=True)
        self._thread.start()
        return self.detach

    def detach(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(1.0)  # it only ever waits on the stop event: it ends at once
        if self._culprit is not None and self._probe is not None:  # ended since the last tick
            self._record(self._probe, self._culprit)
        self._culprit = None

    # ----- the watchdog thread ----------------------------------------------------------
    def _watch(self, post: Poster, loop_thread: int) -> None:
        """Every ``interval``: has the last probe run? If not for ``threshold``, report the
        stack once; else post the next one. One thread wake-up and one loop wake-up per
        interval, and the probe is a plain attribute write on the loop."""
        while not self._stop.wait(self.interval):
            probe = self._probe
            if probe is not None and probe.ran_at is None:
                if self._culprit is None and time.monotonic() - probe.posted >= self.threshold:
                    owners = service_owners(self._sup.services) if self._sup is not None else {}
                    culprit = culprit_of(sys._current_frames().get(loop_thread), owners)
                    self._log(time.monotonic() - probe.posted, culprit)
                    self._culprit = culprit
                continue
            try:
                if self._culprit is not None and probe is not None:
                    post(partial(self._record, probe, self._culprit))
                self._culprit = None
                self._probe = _Probe(time.monotonic())
                post(self._probe.run)
            except Exception:  # the loop is gone (the run ended before detach)
                return

    def _log(self, blocked: float, culprit: Culprit) -> None:
        stack = culprit.stack.rstrip()
        if self._sup is not None:
            stack = self._sup.scrub(stack) or ""  # a source line may hold a literal secret
        log.warning("event loop blocked for %.1f s so far %s\n%s", blocked, culprit.describe(),
                    stack, extra={"service": culprit.service})

    # ----- back on the loop -------------------------------------------------------------
    def _record(self, probe: _Probe, culprit: Culprit) -> None:
        seconds = (probe.ran_at or time.monotonic()) - probe.posted
        self.incidents += 1
        sup = self._sup
        if sup is None:
            return
        stack = sup.scrub(culprit.stack) or ""
        sup.emit(LoopBlocked.of(BlockedLoop(seconds, culprit.service or "", culprit.where,
                                            culprit.call, stack)))

