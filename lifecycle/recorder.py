"""The recorder: the subscriber that builds the ``LifecycleReport`` from the events.

The engine writes each fact once, as an event carrying its record; this is the only code
that writes the report (a supervisor subscribes its recorder first, at construction, so
the report is complete before any other subscriber sees an event, and a failure reported
from a thread after the run still lands in it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._history import History
from .events import (
    CascadeRestarting,
    CloseFinished,
    CloseStarted,
    DetailsReported,
    Event,
    FallbackRecovered,
    HealthAlert,
    HealthUpdated,
    LeaksChecked,
    LoopBlocked,
    RecordEvent,
    RestartFinished,
    ServiceEscalated,
    ServiceFailed,
    ServiceReloaded,
    ServiceRestarting,
    ServiceStopped,
    ShutdownForced,
    ShutdownRequested,
    StartupFinished,
)
from .report import LifecycleReport

__all__ = ["Recorder"]

#: The events whose record goes into one of the report's histories, and which one.
_HISTORIES: dict[type[Event], str] = {
    ServiceFailed: "failures", ServiceRestarting: "restarts", RestartFinished: "restarts",
    CascadeRestarting: "cascades", ServiceReloaded: "reloads", LoopBlocked: "blocked"}


class Recorder:
    """``Recorder(report)`` is a ``Supervisor.subscribe`` listener that fills ``report``."""

    def __init__(self, report: LifecycleReport) -> None:
        self.report = report
        self._write: dict[type[Event], Callable[[Any], None]] = {
            ShutdownRequested: self._shutdown_requested,
            ShutdownForced: self._forced,
            StartupFinished: self._startup,
            **dict.fromkeys(_HISTORIES, self._append),
            HealthAlert: self._incident,
            ServiceEscalated: self._escalation,
            HealthUpdated: self._health,
            FallbackRecovered: self._fallback_recovered,
            CloseStarted: self._close_started,
            ServiceStopped: self._stopped,
            DetailsReported: self._details,
            LeaksChecked: self._leaks,
            CloseFinished: self._close_finished,
        }
        self.event_types = frozenset(self._write)  # the rest never reaches it (_listeners)

    def __call__(self, event: Event) -> None:
        write = self._write.get(type(event))
        if write is not None:
            write(event)

    def _shutdown_requested(self, event: ShutdownRequested) -> None:
        if self.report.reason is None:
            self.report.reason = event.reason
        if event.failed:
            self.report.service_failed = True

    def _forced(self, event: ShutdownForced) -> None:
        self.report.forced_by = event.signal

    def _startup(self, event: StartupFinished) -> None:
        self.report.startup = {rec.service: rec for rec in event.records}
        self.report.startup_elapsed = event.elapsed
        self.report.startup_cancelled = event.cancelled

    def _append(self, event: RecordEvent) -> None:
        if event.record is not None:  # None: an event built by hand, not by the engine
            history: History[Any] = getattr(self.report, _HISTORIES[type(event)])
            history.append(event.record)

    def _incident(self, event: HealthAlert) -> None:
        self.report.service_counts(event.service or "").incidents += 1

    def _escalation(self, event: ServiceEscalated) -> None:
        self.report.service_counts(event.service or "").escalations += 1

    def _health(self, event: HealthUpdated) -> None:
        self.report.health[event.service or ""] = dict(event.view)

    def _fallback_recovered(self, event: FallbackRecovered) -> None:
        if event.restart_reason:
            self.report.restart_requested = event.restart_reason

    def _close_started(self, event: CloseStarted) -> None:
        self.report.shutdown_began = event.began
        self.report.shutdown_budget = event.budget

    def _stopped(self, event: ServiceStopped) -> None:
        if event.records is not None:
            self.report.shutdown[event.service or ""] = {r.stage: r for r in event.records}

    def _details(self, event: DetailsReported) -> None:
        self.report.details[event.service or ""] = dict(event.details)

    def _leaks(self, event: LeaksChecked) -> None:
        self.report.leaks = event.leaks

    def _close_finished(self, event: CloseFinished) -> None:
        self.report.shutdown_elapsed = event.elapsed
