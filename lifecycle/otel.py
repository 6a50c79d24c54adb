"""OpenTelemetry spans for the start and the close (the ``otel`` extra: ``opentelemetry-api``).

Two traces per run, written when each phase ends, from the report (so every fact in them
is the report's, with its secrets already removed):

- ``lifecycle.start``: a child ``start <service>`` per service, and under a Fallback a
  ``try <candidate>`` per attempt;
- ``lifecycle.close``: a child ``stop <service>`` per service, and under it one span per
  stage (``<service>.<stage>``, including ``tasks`` and ``threads`` when they were recorded).

Each span carries ``lifecycle.outcome``, ``lifecycle.deadline`` (seconds) and, when there
is one, ``lifecycle.error`` and an ``exception``-style event with the stack. Anything but
``ok``/``skipped`` sets the span's status to ERROR (a timed-out or abandoned stage, a failed
attempt). Times are placed by the report's offsets, so the spans nest exactly as the run did.

A supervisor attaches :class:`Tracing` by itself when the process has imported
``opentelemetry.trace`` (the only way a tracer provider can have been configured); spans go
to the global tracer provider, or to ``Tracing(tracer_provider=...)`` passed in
``observers=``. Without OpenTelemetry installed nothing here is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from .events import AllStarted, Event, Stopped
from .report import LifecycleReport, StageRecord, StartRecord

if TYPE_CHECKING:
    from .supervisor import Supervisor

__all__ = ["Tracing"]

_NS = 1_000_000_000
_FINE = ("ok", "skipped")


class Tracing:
    """The observer that turns a run's report into OpenTelemetry spans."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.tracer = trace.get_tracer("lifecycle", tracer_provider=tracer_provider)
        self.sup: Supervisor | None = None
        self._anchor: float | None = None  # epoch seconds of the report's offset 0
        self._started = False

    def attach(self, sup: Supervisor) -> Callable[[], None]:
        self.sup = sup
        return sup.subscribe(self.on_event)

    def on_event(self, event: Event) -> None:
        if self.sup is None:
            return
        report = self.sup.report
        if isinstance(event, AllStarted):
            self._anchor = event.at - report.startup_elapsed
            self._start_trace(report)
        elif isinstance(event, Stopped):
            if self._anchor is None:
                self._anchor = event.at - report.shutdown_began - report.shutdown_elapsed
            if report.startup:
                self._start_trace(report)
            if report.shutdown_elapsed or report.shutdown:
                self._close_trace(report)

    # ----- building spans -----------------------------------------------------------------
    def _ns(self, offset: float) -> int:
        assert self._anchor is not None
        return int((self._anchor + offset) * _NS)

    def _span(self, name: str, parent: Span | None, began: float,
              attributes: dict[str, Any]) -> Span:
        context = trace.set_span_in_context(parent) if parent is not None else None
        return self.tracer.start_span(
            name, context=context, start_time=self._ns(began),
            attributes={k: v for k, v in attributes.items() if v is not None})

    def _finish(self, span: Span, began: float, elapsed: float, outcome: str,
                error: str | None = None, stack: str | None = None) -> None:
        if error or stack:
            span.add_event("exception", {k: v for k, v in {
                "exception.message": error, "exception.stacktrace": stack}.items() if v})
        if outcome not in _FINE:
            span.set_status(Status(StatusCode.ERROR, f"{outcome}: {error}" if error else outcome))
        span.end(end_time=self._ns(began + max(elapsed, 0.0)))

    def _start_trace(self, report: LifecycleReport) -> None:
        if self._started:
            return
        self._started = True
        outcome = "failed" if report.startup_failed else "ok"
        root = self._span("lifecycle.start", None, 0.0, {
            "lifecycle.app": report.name, "lifecycle.outcome": outcome})
        for rec in report.startup.values():
            self._service_start(root, rec)
        self._finish(root, 0.0, report.startup_elapsed, "ok" if outcome == "ok" else "error",
                     "a required service did not start" if outcome != "ok" else None)

    def _service_start(self, root: Span, rec: StartRecord) -> None:
        span = self._span(f"start {rec.service}", root, rec.began, {
            "lifecycle.service": rec.service, "lifecycle.outcome": rec.outcome,
            "lifecycle.deadline": rec.deadline, "lifecycle.optional": rec.optional,
            "lifecycle.winner": rec.winner, "lifecycle.error": rec.error})
        at = rec.began  # attempts end to end, as in the Chrome trace
        for attempt in rec.attempts:
            child = self._span(f"try {attempt.candidate}", span, at, {
                "lifecycle.service": rec.service, "lifecycle.candidate": attempt.candidate,
                "lifecycle.outcome": attempt.outcome, "lifecycle.error": attempt.error})
            self._finish(child, at, attempt.elapsed, attempt.outcome, attempt.error, attempt.stack)
            at += attempt.elapsed
        self._finish(span, rec.began, rec.elapsed, rec.outcome, rec.error, rec.stack)

    def _close_trace(self, report: LifecycleReport) -> None:
        root = self._span("lifecycle.close", None, report.shutdown_began, {
            "lifecycle.app": report.name, "lifecycle.deadline": report.shutdown_budget,
            "lifecycle.reason": report.reason, "lifecycle.exit_code": int(report.exit_code),
            "lifecycle.forced_by": report.forced_by})
        for service, stages in report.shutdown.items():
            self._service_stop(root, service, list(stages.values()))
        worst = "ok" if not report.culprits() else "error"
        self._finish(root, report.shutdown_began, report.shutdown_elapsed, worst,
                     None if worst == "ok" else "unclean shutdown")

    def _service_stop(self, root: Span, service: str, stages: list[StageRecord]) -> None:
        if not stages:
            return
        began = min(s.began for s in stages)
        ended = max(s.began + s.elapsed for s in stages)
        bad = [s for s in stages if s.outcome not in _FINE]
        span = self._span(f"stop {service}", root, began, {
            "lifecycle.service": service, "lifecycle.outcome": bad[0].outcome if bad else "ok"})
        for rec in stages:
            child = self._span(f"{service}.{rec.stage}", span, rec.began, {
                "lifecycle.service": service, "lifecycle.stage": rec.stage,
                "lifecycle.outcome": rec.outcome, "lifecycle.deadline": rec.deadline,
                "lifecycle.error": rec.error})
            self._finish(child, rec.began, rec.elapsed, rec.outcome, rec.error, rec.stack)
        self._finish(span, began, ended - began, bad[0].outcome if bad else "ok",
                     bad[0].error if bad else None)
