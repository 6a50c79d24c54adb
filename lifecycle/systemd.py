"""The systemd notify protocol (``Type=notify``, ``WatchdogSec=``), stdlib only.

Active only when ``NOTIFY_SOCKET`` is set (systemd sets it for ``Type=notify`` units). The
supervisor starts :meth:`Notifier.run` before startup; it then tells systemd:

- ``STATUS=...`` as services start and stop (shown by ``systemctl status``);
- ``READY=1`` once every service is running (``systemctl start`` returns then);
- ``STOPPING=1`` the moment shutdown begins;
- ``RELOADING=1`` with ``MONOTONIC_USEC=`` when a reload (SIGHUP) begins, ``READY=1`` when it
  ended (``Type=notify-reload``);
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
from collections.abc import Mapping
from typing import TYPE_CHECKING

import anyio
import anyio.abc

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


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, as systemd wants it with ``RELOADING=1``."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Notifier:
    """Talks to systemd over the ``NOTIFY_SOCKET`` datagram socket."""

    def __init__(self, address: str, *, watchdog: float | None = None) -> None:
        self.address = address
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
    async def run(self, sup: Supervisor, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Follow ``sup``'s events until cancelled (when ``serve()`` ends), pinging the watchdog."""
        self._total = len(sup.services)
        unsubscribe = sup.subscribe(self.on_event)
        try:
            self.notify(f"STATUS=starting {self._total} services")
            task_status.started()
            interval = self.watchdog
            if interval is None:
                await anyio.sleep_forever()
                return
            while True:  # from the event loop itself: a blocked loop stops the pings
                self.notify("WATCHDOG=1")
                await anyio.sleep(interval)
        finally:
            unsubscribe()
            self.close()

    def on_event(self, event: Event) -> None:
        """Translate one lifecycle event into notify fields (cheap; called on the loop)."""
        fields = self._fields(event)
        if fields:
            self.notify(*fields)

    def _fields(self, event: Event) -> list[str]:
        name = event.service
        if isinstance(event, ServiceStarting):
            who = f"{name} ({event.candidate})" if event.candidate else name
            return [f"STATUS=starting {who}; {len(self._running)}/{self._total} running"]
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
            return ["STOPPING=1", f"STATUS=stopping: {event.reason}"]
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
                    f"STATUS=reloading: {what}"]
        if isinstance(event, ReloadFinished):
            failed = f"; reload failed: {', '.join(event.failed)}" if event.failed else ""
            return ["READY=1", f"STATUS=running {len(self._running)}/{self._total} services "
                               f"(reloaded in {event.elapsed:.2f}s{failed})"]
        if isinstance(event, Stopped):
            return [f"STATUS=stopped (exit code {event.exit_code})"]
        return []
