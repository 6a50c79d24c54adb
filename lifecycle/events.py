"""Typed lifecycle events for ``Supervisor.subscribe``; each has ``to_dict()``.

The events are the engine's spine: every fact the report holds reaches it as an event, and
an event that states a fact carries its record (``StageFinished.record`` is the
``StageRecord``), built once where it happened. The report is only one subscriber
(``lifecycle.recorder``); logging, systemd, metrics and traces are others.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, TypeVar

from .records import (
    BlockedLoop,
    CascadeRecord,
    FailureRecord,
    ReloadRecord,
    RestartRecord,
    StageRecord,
    StartRecord,
)

if TYPE_CHECKING:
    from .leaks import LeakReport


E = TypeVar("E", bound="RecordEvent")


def payload() -> Any:
    """A field that carries records: left out of ``to_dict()``, ``repr()`` and ``==``."""
    return field(default=None, compare=False, repr=False, kw_only=True, metadata={"payload": True})


@dataclass(frozen=True)
class Event:
    """Base of every event: ``kind`` names it, ``at`` is wall-clock time (epoch seconds)."""

    service: str | None
    at: float = field(default_factory=time.time, kw_only=True)

    @property
    def kind(self) -> str:
        return type(self).__name__

    def to_dict(self) -> dict[str, Any]:
        """The event's own fields, JSON-safe; the records it carries are left out."""
        return {"kind": self.kind, **{f.name: getattr(self, f.name) for f in fields(self)
                                      if not f.metadata.get("payload")}}


@dataclass(frozen=True)
class RecordEvent(Event):
    """An event that states one fact: it carries the fact's ``record``, and its own fields
    are read from it (``StageFinished.of(stage_record)``), so the fact is written once."""

    record: Any = payload()  # narrowed by each subclass; None on an event built by hand

    @classmethod
    def of(cls: type[E], record: Any) -> E:
        names, read = _readers(cls)
        if read is None:  # a subclass with a __post_init__ of its own: its __init__ runs
            return cls(record.service or None, record=record,
                       **{name: getattr(record, name) for name in names})
        # What the dataclass __init__ would store, stored at once: a frozen __init__ sets
        # each field through object.__setattr__, and every fact of a close is one of these.
        event = object.__new__(cls)
        values = event.__dict__
        values["service"] = record.service or None
        values["at"] = time.time()
        values["record"] = record
        values.update(zip(names, read(record), strict=True))
        return event


_READERS: dict[type[Event], tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]] | None]] = {}


def _readers(cls: type[Event]) -> tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]] | None]:
    """The fields ``of`` copies from the record, and one getter of all of them (None when
    the class must be built by its ``__init__``); cached: ``fields()`` is not free."""
    cached = _READERS.get(cls)
    if cached is None:
        names = tuple(f.name for f in fields(cls) if f.name not in ("service", "at")
                      and not f.metadata.get("payload"))
        getter = operator.attrgetter(*names) if names else None
        read: Callable[[Any], tuple[Any, ...]] | None = None
        if getter is not None and not hasattr(cls, "__post_init__") and any(
                "__dict__" in vars(k) for k in cls.__mro__):
            read = getter if len(names) > 1 else (lambda rec, get=getter: (get(rec),))
        cached = _READERS[cls] = (names, read)
    return cached


@dataclass(frozen=True)
class ServiceStarting(Event):
    candidate: str | None = None
    deadline: float = 0.0  # the start_timeout of this attempt


@dataclass(frozen=True)
class ServiceStarted(RecordEvent):
    elapsed: float = 0.0
    winner: str | None = None
    record: StartRecord | None = payload()  # None when a restart started it again



@dataclass(frozen=True)
class ServiceStartFailed(RecordEvent):
    outcome: str = ""
    error: str | None = None
    optional: bool = False
    record: StartRecord | None = payload()



@dataclass(frozen=True)
class StartupFinished(Event):
    """The start plan ended (every service started, or not): ``records`` in start-plan order,
    the skipped starts included; ``cancelled`` when the caller cancelled it midway."""

    elapsed: float = 0.0
    cancelled: bool = False
    records: tuple[StartRecord, ...] = payload()


@dataclass(frozen=True)
class AllStarted(Event):
    elapsed: float = 0.0


@dataclass(frozen=True)
class ShutdownRequested(Event):
    """The first request of a shutdown, and later the first one that says a service failed
    (``failed``: the exit code will say so)."""

    reason: str = ""
    failed: bool = False


@dataclass(frozen=True)
class ShutdownForced(Event):
    signal: int | None = None


@dataclass(frozen=True)
class CloseStarted(Event):
    """The close plan began: ``began`` seconds after the supervisor began, ``budget`` its
    ``shutdown_timeout``."""

    began: float = 0.0
    budget: float = 0.0


@dataclass(frozen=True)
class StageFinished(RecordEvent):
    stage: str = ""
    outcome: str = ""
    elapsed: float = 0.0
    deadline: float = 0.0
    error: str | None = None
    record: StageRecord | None = payload()



@dataclass(frozen=True)
class ServiceStopped(Event):
    """``records``: the stages of the final close (None for a stop before a restart, whose
    stages are only in the ``StageFinished`` events)."""

    clean: bool = True
    records: tuple[StageRecord, ...] | None = payload()


@dataclass(frozen=True)
class DetailsReported(Event):
    """A service's ``report_details()`` at the close."""

    details: Mapping[str, Any] = payload()


@dataclass(frozen=True)
class LeaksChecked(Event):
    """The leak check at the end of the close."""

    leaks: LeakReport | None = payload()


@dataclass(frozen=True)
class CloseFinished(Event):
    """The close plan ended after ``elapsed`` seconds; ``Stopped`` follows."""

    elapsed: float = 0.0


@dataclass(frozen=True)
class ServiceFailed(RecordEvent):
    where: str = ""
    error: str = ""
    action: str = ""
    record: FailureRecord | None = payload()



@dataclass(frozen=True)
class ServiceRestarting(RecordEvent):
    where: str = ""
    attempt: int = 0
    delay: float = 0.0
    record: RestartRecord | None = payload()



@dataclass(frozen=True)
class RestartFinished(RecordEvent):
    """A health recovery ended, or a service restarted with another (a restart strategy):
    the restarts that ``ServiceRestarting`` does not announce."""

    where: str = ""  # "health" or "cascade"
    attempt: int = 0
    reason: str = ""
    outcome: str = ""
    error: str | None = None
    record: RestartRecord | None = payload()


@dataclass(frozen=True)
class HealthUpdated(Event):
    """A service's health state changed (``view``: its part of ``report.health``)."""

    view: Mapping[str, Any] = payload()


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

    @property
    def restart_reason(self) -> str | None:
        """Why the app restarts (``report.restart_requested``), when ``action`` is restart."""
        if self.action != "restart":
            return None
        return f"{self.service}: preferred candidate {self.candidate!r} answers again"


@dataclass(frozen=True)
class ServiceEscalated(Event):
    """A restart or recovery limit was reached: the alert that says why, once per escalation.

    ``action`` is the restart policy's ``then`` as applied: ``"shutdown"`` or ``"give_up"``.
    """

    where: str = ""  # "run", "loop <name>" or "health"
    reason: str = ""
    action: str = ""


@dataclass(frozen=True)
class CascadeRestarting(RecordEvent):
    """A restart strategy restarts ``services`` with ``service`` (whose ``where`` failed).

    ``services`` is the whole group in start order, ``service`` included: they are stopped in
    the reverse order, then started in this one.
    """

    strategy: str = ""
    where: str = ""  # "run" or "health"
    services: tuple[str, ...] = ()
    record: CascadeRecord | None = payload()  # completed in place when the cascade ends


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
class ServiceReloaded(RecordEvent):
    """One service's ``reload()`` ended (``outcome`` ok, error, timeout, abandoned, skipped)."""

    outcome: str = ""
    elapsed: float = 0.0
    deadline: float = 0.0
    error: str | None = None
    record: ReloadRecord | None = payload()



@dataclass(frozen=True)
class ReloadFinished(Event):
    """Every reload of one request ended; ``failed`` names the services whose reload did not."""

    failed: tuple[str, ...] = ()
    elapsed: float = 0.0


@dataclass(frozen=True)
class LoopBlocked(RecordEvent):
    """The event loop did not turn for ``seconds`` (the blocking detector); ``service`` is
    the one whose code held it, ``where`` its ``file:line``, ``call`` what it was in."""

    seconds: float = 0.0
    where: str = ""
    call: str = ""
    stack: str = ""
    record: BlockedLoop | None = payload()

