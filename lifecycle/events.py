"""Typed lifecycle events for ``Supervisor.subscribe``; each has ``to_dict()``."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    """Base of every event: ``kind`` names it, ``at`` is wall-clock time (epoch seconds)."""

    service: str | None
    at: float = field(default_factory=time.time, kw_only=True)

    @property
    def kind(self) -> str:
        return type(self).__name__

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True)
class ServiceStarting(Event):
    candidate: str | None = None
    deadline: float = 0.0  # the start_timeout of this attempt


@dataclass(frozen=True)
class ServiceStarted(Event):
    elapsed: float = 0.0
    winner: str | None = None


@dataclass(frozen=True)
class ServiceStartFailed(Event):
    outcome: str = ""
    error: str | None = None
    optional: bool = False


@dataclass(frozen=True)
class AllStarted(Event):
    elapsed: float = 0.0


@dataclass(frozen=True)
class ShutdownRequested(Event):
    reason: str = ""


@dataclass(frozen=True)
class ShutdownForced(Event):
    signal: int | None = None


@dataclass(frozen=True)
class StageFinished(Event):
    stage: str = ""
    outcome: str = ""
    elapsed: float = 0.0
    deadline: float = 0.0
    error: str | None = None


@dataclass(frozen=True)
class ServiceStopped(Event):
    clean: bool = True


@dataclass(frozen=True)
class ServiceFailed(Event):
    where: str = ""
    error: str = ""
    action: str = ""


@dataclass(frozen=True)
class ServiceRestarting(Event):
    where: str = ""
    attempt: int = 0
    delay: float = 0.0


@dataclass(frozen=True)
class Stopped(Event):
    exit_code: int = 0
    ok: bool = True


@dataclass(frozen=True)
class HealthAlert(Event):
    """A service became unhealthy: one per incident, not one per failed scan."""

    reason: str = ""
    failures: int = 0


@dataclass(frozen=True)
class HealthRestored(Event):
    """The incident is over: the checks passed for the stable period after the grace period."""

    recoveries: int = 0  # recoveries during the incident that ended


@dataclass(frozen=True)
class ServiceRecovering(Event):
    attempt: int = 0
    method: str = ""  # "recover" or "restart"
    reason: str = ""


@dataclass(frozen=True)
class ServiceDegraded(Event):
    """A Fallback started on a candidate other than its preferred (first) one."""

    winner: str = ""
    preferred: str = ""
    reason: str | None = None  # why the preferred candidate did not start (scrubbed)
    ready: bool = True  # whether the degraded service counts as ready (``degraded_ready``)


@dataclass(frozen=True)
class FallbackRecovered(Event):
    """A degraded Fallback's recheck found a preferred candidate answering again."""

    candidate: str = ""
    action: str = ""  # "alert", or "restart" (a graceful shutdown with exit code 75)


@dataclass(frozen=True)
class ServiceEscalated(Event):
    """A restart or recovery limit was reached: the alert that says why, once per escalation.

    ``action`` is the restart policy's ``then`` as applied: ``"shutdown"`` or ``"give_up"``.
    """

    where: str = ""  # "run", "loop <name>" or "health"
    reason: str = ""
    action: str = ""


@dataclass(frozen=True)
class CascadeRestarting(Event):
    """A restart strategy restarts ``services`` with ``service`` (whose ``where`` failed).

    ``services`` is the whole group in start order, ``service`` included: they are stopped in
    the reverse order, then started in this one.
    """

    strategy: str = ""
    where: str = ""  # "run" or "health"
    services: tuple[str, ...] = ()


@dataclass(frozen=True)
class CascadeRestarted(Event):
    """The end of a restart cascade: ``outcome`` ok, failed (a member did not start again,
    or gave up) or skipped (shutdown began)."""

    strategy: str = ""
    outcome: str = ""
    elapsed: float = 0.0
    error: str | None = None


@dataclass(frozen=True)
class ReloadRequested(Event):
    """SIGHUP or ``request_reload()``: the services with a ``reload()`` hook reload."""

    reason: str = ""
    services: tuple[str, ...] = ()
    deadline: float = 0.0  # worst case: their reload_timeouts one after the other


@dataclass(frozen=True)
class ServiceReloaded(Event):
    """One service's ``reload()`` ended (``outcome`` ok, error, timeout, abandoned, skipped)."""

    outcome: str = ""
    elapsed: float = 0.0
    deadline: float = 0.0
    error: str | None = None


@dataclass(frozen=True)
class ReloadFinished(Event):
    """Every reload of one request ended; ``failed`` names the services whose reload did not."""

    failed: tuple[str, ...] = ()
    elapsed: float = 0.0


@dataclass(frozen=True)
class LoopBlocked(Event):
    """The event loop did not turn for ``seconds`` (the blocking detector); ``service`` is
    the one whose code held it, ``where`` its ``file:line``, ``call`` what it was in."""

    seconds: float = 0.0
    where: str = ""
    call: str = ""
    stack: str = ""
