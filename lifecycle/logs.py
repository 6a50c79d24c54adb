"""Logging for lifecycle apps: readable text by default, JSON lines on request.

- :class:`JsonFormatter`: one JSON object per line (stdlib only), with the record's
  ``extra`` fields, the running service, and the exception text;
- :func:`configure`: installs a handler on the root logger (``format="text" | "json"``);
- :func:`log_events`: a ``Supervisor.subscribe`` listener that logs one line per lifecycle
  event on the ``lifecycle.events`` logger (cheap when that logger is disabled), and each
  failure with its traceback on ``lifecycle``;
- :class:`ReportLog`: the listener that logs the end-of-run table when the close ends.

A supervisor subscribes both at construction (``log_report=False`` leaves the table out).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import IO, TYPE_CHECKING, Any

from ._context import current_service
from ._signals import signal_name
from .events import CloseFinished, Event, ServiceFailed

if TYPE_CHECKING:
    from .report import LifecycleReport

__all__ = ["TEXT_FORMAT", "JsonFormatter", "ReportLog", "configure", "describe_event", "log_events"]

#: The layout of ``format="text"``.
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

events_log = logging.getLogger("lifecycle.events")
log = logging.getLogger("lifecycle")

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ...}`` per line, for log collectors.

    ``time`` is UTC ISO 8601 with milliseconds. ``service`` is the lifecycle service whose
    code logged the line, when there is one. ``extra=`` fields are included as they are
    (a ``lifecycle_event`` dict is merged in flat: ``event``, ``service``, its fields);
    values JSON cannot encode are written as their ``str()``. An exception becomes ``exc``.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc)
                            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        service = current_service.get()
        if service is not None:
            entry["service"] = service
        for key, value in vars(record).items():
            if key in _STANDARD or key.startswith("_"):
                continue
            if key == "lifecycle_event" and isinstance(value, dict):
                event = dict(value)
                entry["event"] = event.pop("kind", None)
                entry.update(event)
            else:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


_installed: logging.Handler | None = None


def configure(format: str = "text", level: int | str = logging.INFO,
              stream: IO[str] | None = None) -> logging.Handler:
    """Send all logging to ``stream`` (stderr) as text or JSON lines; returns the handler.

    Calling it again replaces the handler it installed before (not others). ``level`` is
    the root logger's level (a name like ``"DEBUG"`` works too).
    """
    global _installed
    if format not in ("text", "json"):
        raise ValueError(f"log format must be 'text' or 'json', not {format!r}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.setLevel(level.upper() if isinstance(level, str) else level)  # ValueError if unknown
    if _installed is not None:
        root.removeHandler(_installed)
    root.addHandler(handler)
    _installed = handler
    return handler


def _generic(d: dict[str, Any]) -> str:
    rest = " ".join(f"{k}={_short(v)}" for k, v in d.items()
                    if k not in ("kind", "service", "at") and v not in (None, ""))
    return f"{d['kind']} {d.get('service') or 'app'}" + (f" {rest}" if rest else "")


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    text = str(value)
    return repr(text) if " " in text else text


def _why(error: Any) -> str:
    return f": {error}" if error else ""


_WARN_KINDS = frozenset({"ServiceStartFailed", "ServiceFailed", "ShutdownForced", "HealthAlert",
                         "ServiceRecovering", "ServiceDegraded", "FallbackRecovered",
                         "ServiceEscalated"})


def describe_event(d: dict[str, Any]) -> tuple[int, str]:
    """The level and the readable message of one event (given as its ``to_dict()``)."""
    kind, who = d["kind"], d.get("service") or "app"
    warn = (kind in _WARN_KINDS or (kind == "StageFinished" and d["outcome"] != "ok")
            or (kind == "ServiceStopped" and not d["clean"]) or (kind == "Stopped" and not d["ok"]))
    level = logging.WARNING if warn else logging.INFO
    if kind == "ServiceStarting":
        text = f"{who}: starting" + (f" candidate {d['candidate']}" if d["candidate"] else "")
    elif kind == "ServiceStarted":
        text = f"{who}: started in {d['elapsed']:.3f}s" + (
            f" (fallback winner: {d['winner']})" if d["winner"] else "")
    elif kind == "ServiceStartFailed":
        text = (f"{who}: start {d['outcome']}{_why(d['error'])}"
                + (" (optional: running degraded)" if d["optional"] else ""))
    elif kind == "AllStarted":
        text = f"all services started in {d['elapsed']:.3f}s"
    elif kind == "ShutdownRequested":
        text = f"shutdown requested: {d['reason']}"
    elif kind == "ShutdownForced":
        text = "shutdown forced" + (f" by {signal_name(d['signal'])}" if d["signal"] else "")
    elif kind == "StageFinished":
        text = (f"{who}.{d['stage']}: {d['outcome']} in {d['elapsed']:.3f}s "
                f"(deadline {d['deadline']:g}s){_why(d['error'])}")
    elif kind == "ServiceStopped":
        text = f"{who}: stopped" + ("" if d["clean"] else " uncleanly")
    elif kind == "ServiceFailed":
        text = f"{who}: {d['where']} failed{_why(d['error'])}" + (
            f" ({d['action']})" if d["action"] else "")
    elif kind == "ServiceRestarting":
        text = f"{who}: restarting {d['where']} (attempt {d['attempt']}) in {d['delay']:.2f}s"
    elif kind == "HealthAlert":
        text = f"{who}: unhealthy after {d['failures']} failed checks{_why(d['reason'])}"
    elif kind == "HealthRestored":
        text = f"{who}: healthy again" + (
            f" after {d['recoveries']} recoveries" if d["recoveries"] else "")
    elif kind == "ServiceRecovering":
        text = f"{who}: recovering by {d['method']} (attempt {d['attempt']}){_why(d['reason'])}"
    elif kind == "ServiceDegraded":
        text = (f"{who}: DEGRADED, running on {d['winner']} instead of {d['preferred']}"
                f"{_why(d['reason'])}" + ("" if d["ready"] else " (not ready: degraded_ready=False)"))
    elif kind == "FallbackRecovered":
        text = (f"{who}: preferred candidate {d['candidate']} answers again"
                + ("; restarting onto it (exit code 75)" if d["action"] == "restart" else ""))
    elif kind == "ServiceEscalated":
        text = f"{who}: escalated ({d['action']}) in {d['where']}: {d['reason']}"
    elif kind == "CascadeRestarting":
        text = (f"{who}: {d['where']} restart takes {', '.join(d['services'])} with it "
                f"({d['strategy']}: stopping in reverse order, then starting in order)")
    elif kind == "CascadeRestarted":
        text = (f"{who}: {d['strategy']} restart {d['outcome']} in {d['elapsed']:.3f}s"
                f"{_why(d['error'])}")
        level = logging.INFO if d["outcome"] == "ok" else logging.WARNING
    elif kind == "ReloadRequested":
        text = (f"reload requested ({d['reason']}): "
                + (", ".join(d["services"]) or "no service has a reload() hook"))
    elif kind == "ServiceReloaded":
        text = (f"{who}: reload {d['outcome']} in {d['elapsed']:.3f}s (deadline "
                f"{d['deadline']:g}s){_why(d['error'])}")
        level = logging.INFO if d["outcome"] in ("ok", "skipped") else logging.WARNING
    elif kind == "ReloadFinished":
        text = f"reload finished in {d['elapsed']:.3f}s" + (
            f"; failed: {', '.join(d['failed'])}" if d["failed"] else "")
    elif kind == "StartupFinished":
        text = f"startup finished in {d['elapsed']:.3f}s" + (" (cancelled)" if d["cancelled"] else "")
    elif kind == "CloseStarted":
        text = f"close started (budget {d['budget']:g}s)"
    elif kind == "CloseFinished":
        text = f"close finished in {d['elapsed']:.3f}s"
    elif kind == "DetailsReported":
        text = f"{who}: details reported"
    elif kind == "LeaksChecked":
        text = "leak check done"
    elif kind == "HealthUpdated":
        text, level = f"{who}: health state changed", logging.DEBUG
    elif kind == "RestartFinished":
        what = "after failed health checks" if d["where"] == "health" else "with another service"
        text = f"{who}: {d['reason']} (#{d['attempt']}, {what}): {d['outcome']}{_why(d['error'])}"
        level = logging.WARNING if d["where"] == "health" or d["outcome"] != "ok" else logging.INFO
    elif kind == "Stopped":
        text = f"stopped: exit code {d['exit_code']}" + (" (ok)" if d["ok"] else "")
    else:  # an event kind added later: still one line, with its fields
        text = _generic(d)
    return level, text


def _may_warn(event: Event) -> bool:
    kind = event.kind
    if kind == "StageFinished":  # the most frequent: one per stage of every service
        return getattr(event, "outcome", "ok") != "ok"
    if kind == "RestartFinished":
        return True
    if kind in ("CascadeRestarted", "ServiceReloaded"):
        return getattr(event, "outcome", "ok") not in ("ok", "skipped")
    return (kind in _WARN_KINDS or (kind in ("ServiceStopped", "Stopped")
            and not (getattr(event, "outcome", "ok") == "ok" and getattr(event, "clean", True)
                     and getattr(event, "ok", True))))


def log_events(event: Event) -> None:
    """A ``Supervisor.subscribe`` listener: one log line per lifecycle event.

    Logged on ``lifecycle.events``: INFO for the normal course of things, WARNING for a
    failure, an overrun or a forced shutdown. With :class:`JsonFormatter` the event's
    fields become fields of the line. Costs one level check when the logger is disabled.
    """
    if isinstance(event, ServiceFailed) and event.record is not None:
        rec = event.record  # on ``lifecycle`` at ERROR, with the (scrubbed) traceback
        log.error("service %r %s failed: %s%s\n%s", rec.service, rec.where, rec.error,
                  f" ({rec.action})" if rec.action else "", rec.traceback.rstrip())
        return
    if not events_log.isEnabledFor(logging.INFO) and not (
            events_log.isEnabledFor(logging.WARNING) and _may_warn(event)):
        return  # skip building the dict of a line nobody will see
    if event.kind == "LoopBlocked":
        return  # logged where it happens, with its stack
    d = event.to_dict()
    try:
        level, text = describe_event(d)
    except KeyError:  # an event whose fields changed: never lose the line
        level, text = logging.INFO, _generic(d)
    if events_log.isEnabledFor(level):
        events_log.log(level, "%s", text, extra={"lifecycle_event": d})


class ReportLog:
    """Logs ``report.format()`` on ``lifecycle`` when the close ends (``CloseFinished``):
    INFO when the report is ok, WARNING otherwise."""

    event_types = frozenset({CloseFinished})  # the only one it acts on (lifecycle._listeners)

    def __init__(self, report: LifecycleReport) -> None:
        self.report = report

    def __call__(self, event: Event) -> None:
        if not isinstance(event, CloseFinished):
            return
        level = logging.INFO if self.report.ok else logging.WARNING
        if log.isEnabledFor(level):
            log.log(level, "%s", self.report.format())
