"""The systemd notify protocol (``Type=notify``, ``WatchdogSec=``), stdlib only.

Active only when ``NOTIFY_SOCKET`` is set (systemd sets it for ``Type=notify`` units).
``serve()`` adds it to the run's observers: attached (it subscribes to the events) and its
:meth:`Notifier.run_alongside` started before startup; it then tells systemd:

- ``STATUS=...`` as services start and stop (shown by ``systemctl status``);
- ``READY=1`` once every service is running (``systemctl start`` returns then);
- ``STOPPING=1`` the moment shutdown begins;
- ``RELOADING=1`` with ``MONOTONIC_USEC=`` when a reload (SIGHUP) begins, ``READY=1`` when it
  ended (``Type=notify-reload``);
- ``EXTEND_TIMEOUT_USEC=`` while starting, reloading and closing, never past the declared
  deadlines of what is in flight (see :func:`Notifier.progress` and docs/deployment.md), and
  every ``progress_interval`` a ``STATUS=`` naming what is awaited ("stopping: metrics.flush
  (2.1 s of 5 s)");
- ``WATCHDOG=1`` every ``WATCHDOG_USEC / 2`` from the event loop itself, so a loop blocked
  by a synchronous call stops the pings and systemd kills and restarts the process. Only
  when ``WATCHDOG_PID`` is unset or names this process.

Sending never blocks the event loop and never raises into the lifecycle: the socket is
non-blocking, and a failure is logged once (then at debug level).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from ._backend import now
from ._bounded import ABANDON_GRACE
from .events import (
    AllStarted,
    Event,
    HealthAlert,
    HealthRestored,
    ReloadFinished,
    ReloadRequested,
    ServiceFailed,
    ServiceRecovering,
    ServiceRestarting,
    ServiceStarted,
    ServiceStartFailed,
    ServiceStarting,
    ServiceStopped,
    ShutdownForced,
    ShutdownRequested,
    StageFinished,
    Stopped,
)

if TYPE_CHECKING:
    from .supervisor import Supervisor

log = logging.getLogger("lifecycle.systemd")


def _address(value: str) -> str:
    """``@name`` is Linux's abstract namespace (a leading NUL byte); anything else a path."""
    return "\0" + value[1:] if value.startswith("@") else value


def watchdog_interval(environ: Mapping[str, str], pid: int | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``WATCHDOG_USEC``), or None when the
    watchdog is off or meant for another process (``WATCHDOG_PID``)."""
    usec = environ.get("WATCHDOG_USEC", "")
    owner = environ.get("WATCHDOG_PID", "")
    try:
        micros = int(usec)
        if owner and int(owner) != (os.getpid() if pid is None else pid):
            return None
    except ValueError:
        return None
    return micros / 2e6 if micros > 0 else None


#: Seconds a close may run past ``shutdown_timeout``: the cancellation grace, the leak settle.
CLOSE_OVERRUN = ABANDON_GRACE + 1.0


def extend(seconds: float) -> str:
    """``EXTEND_TIMEOUT_USEC=``: systemd waits that long for the next message (it only ever
    lengthens its timeout with it, never shortens it)."""
    return f"EXTEND_TIMEOUT_USEC={max(int(seconds * 1e6), 0)}"


def _flights(flights: list[tuple[str, float, float]]) -> str:
    return ", ".join(f"{label} ({elapsed:.1f} s of {deadline:g} s)"
                     for label, elapsed, deadline in flights)


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, as systemd wants it with ``RELOADING=1``."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Notifier:
    """Talks to systemd over the ``NOTIFY_SOCKET`` datagram socket."""

    #: Seconds between progress reports (STATUS, EXTEND_TIMEOUT_USEC) while starting or closing.
    progress_interval = 1.0

    def __init__(self, address: str, *, watchdog: float | None = None) -> None:
        self.address = address
        self._sup: Supervisor | None = None
        self.watchdog = watchdog
        self.sent = 0
        self._sock: socket.socket | None = None
        self._warned = False
        self._total = 0
        self._running: set[str] = set()
        self._stopped = 0
        self._closing = False

    def __repr__(self) -> str:
        return f"<Notifier {self.address!r} watchdog={self.watchdog}>"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier | None:
        """A notifier for ``$NOTIFY_SOCKET``, or None when not run by systemd."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if not address:
            return None
        if not address.startswith(("/", "@")):
            log.warning("NOTIFY_SOCKET=%r is not a unix socket path or @abstract name; "
                        "systemd notifications are off", address)
            return None
        return cls(address, watchdog=watchdog_interval(env))

    # ----- sending ------------------------------------------------------------------------
    def notify(self, *fields: str) -> bool:
        """Send ``fields`` (``"READY=1"``, ...) as one datagram; False if it could not be sent."""
        message = "\n".join(fields).encode("utf-8", "replace")
        try:
            if self._sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                sock.setblocking(False)
                self._sock = sock
            self._sock.sendto(message, _address(self.address))
        except OSError as exc:  # full buffer (BlockingIOError), no listener, bad path, ...
            level = logging.DEBUG if self._warned else logging.WARNING
            self._warned = True
            log.log(level, "systemd notification %r to %s failed: %s", fields, self.address, exc)
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # ----- the supervisor's side -----------------------------------------------------------
    def attach(self, sup: Supervisor) -> Callable[[], None]:
        """As an observer: follow ``sup``'s events; returns the unsubscribe function."""
        self._total = len(sup.services)
        self._sup = sup
        return sup.subscribe(self.on_event)

    async def run_alongside(self, sup: Supervisor, *,
                            task_status: anyio.abc.TaskStatus[None]) -> None:
        """Ping the watchdog and report progress until cancelled (when ``serve()`` ends);
        follows ``sup``'s events itself unless it was attached as an observer."""
        unsubscribe = self.attach(sup) if self._sup is not sup else None
        try:
            self.notify(f"STATUS=starting {self._total} services")
            task_status.started()
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._report_progress)
                interval = self.watchdog
                while interval is not None:  # from the event loop itself: a blocked loop
                    self.notify("WATCHDOG=1")  # stops the pings
                    await anyio.sleep(interval)
                await anyio.sleep_forever()
        finally:
            if unsubscribe is not None:
                unsubscribe()
            self.close()

    run = run_alongside  # the name it had before it became an observer

    async def _report_progress(self) -> None:
        while True:
            await anyio.sleep(self.progress_interval)
            fields = self.progress()
            if fields:
                self.notify(*fields)

    def progress(self) -> list[str]:
        """While starting or closing: what is awaited, and the timeout extension it justifies.

        Starting: until the latest deadline of the starts in flight (plus the cancellation
        grace). Closing: until the end of ``shutdown_timeout`` plus :data:`CLOSE_OVERRUN`,
        the bound the close keeps whatever the services do.
        """
        sup = self._sup
        if sup is None:
            return []
        flights = sup.jobs.in_flight()
        if sup.state.value == "starting":
            starts = [f for f in flights if f[0].endswith(".start")]
            if not starts:
                return []
            left = max(deadline - elapsed for _, elapsed, deadline in starts)
            return [extend(left + ABANDON_GRACE), f"STATUS=starting: {_flights(starts)}"]
        if sup.state.value == "stopping":
            left = sup.origin + sup.report.shutdown_began + sup.shutdown_timeout - now()
            what = _flights(flights) if flights else (
                f"{self._stopped}/{len(self._running)} services stopped")
            return [extend(left + CLOSE_OVERRUN), f"STATUS=stopping: {what}"]
        return []

    def on_event(self, event: Event) -> None:
        """Translate one lifecycle event into notify fields (cheap; called on the loop)."""
        fields = self._fields(event)
        if fields:
            self.notify(*fields)

    def _fields(self, event: Event) -> list[str]:
        name = event.service
        if isinstance(event, ServiceStarting):
            who = f"{name} ({event.candidate})" if event.candidate else name
            return [f"STATUS=starting {who}; {len(self._running)}/{self._total} running",
                    extend(event.deadline + ABANDON_GRACE)]
        if isinstance(event, ServiceStarted) and name is not None:
            self._running.add(name)
            return [f"STATUS=started {name}; {len(self._running)}/{self._total} running"]
        if isinstance(event, ServiceStartFailed):
            why = f": {event.error}" if event.error else ""
            return [f"STATUS=start of {name} {event.outcome}{why}"]
        if isinstance(event, AllStarted):
            return ["READY=1", f"STATUS=running {len(self._running)}/{self._total} services "
                               f"(started in {event.elapsed:.2f}s)"]
        if isinstance(event, ShutdownRequested):
            self._closing = True
            budget = self._sup.shutdown_timeout if self._sup is not None else None
            return ["STOPPING=1", f"STATUS=stopping: {event.reason}"] + (
                [extend(budget + CLOSE_OVERRUN)] if budget is not None else [])
        if isinstance(event, ShutdownForced):
            return ["STATUS=stopping: forced, cancelling everything"]
        if isinstance(event, StageFinished):
            return [f"STATUS=stopping: {name}.{event.stage} {event.outcome}; "
                    f"{self._stopped}/{len(self._running)} services stopped"]
        if isinstance(event, ServiceStopped):
            if not self._closing:  # stopped by a restart cascade: it starts again
                return [f"STATUS=restarting: {name} stopped"]
            self._stopped += 1
            return [f"STATUS=stopping: {name} stopped; "
                    f"{self._stopped}/{len(self._running)} services stopped"]
        if isinstance(event, ServiceRestarting):
            return [f"STATUS=restarting {name} {event.where} (attempt {event.attempt})"]
        if isinstance(event, ServiceFailed) and not self._closing:
            return [f"STATUS={name} {event.where} failed: {event.error}"]
        if isinstance(event, HealthAlert):
            return [f"STATUS={name} unhealthy: {event.reason}"]
        if isinstance(event, ServiceRecovering):
            return [f"STATUS=recovering {name} by {event.method} (attempt {event.attempt})"]
        if isinstance(event, HealthRestored) and not self._closing:
            return [f"STATUS=running {len(self._running)}/{self._total} services "
                    f"({name} healthy again)"]
        if isinstance(event, ReloadRequested):
            what = ", ".join(event.services) or "nothing to reload"
            return ["RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}",
                    f"STATUS=reloading: {what}", extend(event.deadline)]
        if isinstance(event, ReloadFinished):
            failed = f"; reload failed: {', '.join(event.failed)}" if event.failed else ""
            return ["READY=1", f"STATUS=running {len(self._running)}/{self._total} services "
                               f"(reloaded in {event.elapsed:.2f}s{failed})"]
        if isinstance(event, Stopped):
            return [f"STATUS=stopped (exit code {event.exit_code})"]
        return []
