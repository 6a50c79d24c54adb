"""The startup and shutdown timeline as a Chrome trace (open it in https://ui.perfetto.dev).

One track per service, in the order services appear in the report; the supervisor's own
phases on track 0. Each start, fallback attempt and stop stage is a complete event
(``"ph": "X"``) placed by the report's ``began`` offsets (seconds since the supervisor
began starting) and ``elapsed``; its ``args`` hold the outcome, the deadline and the error.
Restart cascades and reloads are slices too; restarts and health recoveries are instant
events (``"ph": "i"``) on their service's track. Times are in microseconds, as the format
wants.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from typing import Any

from .report import LifecycleReport, StageRecord, StartRecord

__all__ = ["chrome_trace", "write_trace"]

_PID = 1
_US = 1_000_000


def _us(seconds: float) -> float:
    return round(seconds * _US, 3)


def _slice(name: str, cat: str, tid: int, began: float, elapsed: float,
           args: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "cat": cat, "ph": "X", "pid": _PID, "tid": tid,
            "ts": _us(began), "dur": _us(max(elapsed, 0.0)),
            "args": {k: v for k, v in args.items() if v is not None}}


def _meta(name: str, tid: int, args: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "ph": "M", "pid": _PID, "tid": tid, "args": args}


def _start_events(rec: StartRecord, tid: int) -> list[dict[str, Any]]:
    label = "start" if rec.outcome == "ok" else f"start ({rec.outcome})"
    events = [_slice(label, "startup", tid, rec.began, rec.elapsed, {
        "outcome": rec.outcome, "deadline": rec.deadline, "optional": rec.optional,
        "winner": rec.winner, "error": rec.error, "stack": rec.stack})]
    # Fallback attempts are laid end to end from the start's beginning (the brief cleanup
    # between two attempts is not shown), so they nest inside the start slice.
    at = rec.began
    for attempt in rec.attempts:
        events.append(_slice(f"try {attempt.candidate}", "startup", tid, at, attempt.elapsed, {
            "outcome": attempt.outcome, "error": attempt.error, "stack": attempt.stack}))
        at += attempt.elapsed
    return events


def _stage_event(rec: StageRecord, tid: int) -> dict[str, Any]:
    label = rec.stage if rec.clean else f"{rec.stage} ({rec.outcome})"
    return _slice(label, "shutdown", tid, rec.began, rec.elapsed, {
        "outcome": rec.outcome, "deadline": rec.deadline, "error": rec.error,
        "stack": rec.stack})


def _close_args(report: LifecycleReport) -> dict[str, Any]:
    return {"budget": report.shutdown_budget, "shutdown_elapsed": report.shutdown_elapsed,
            "reason": report.reason, "forced_by": report.forced_by}


def chrome_trace(report: LifecycleReport) -> dict[str, Any]:
    """The report's timeline in the Trace Event Format (a JSON-safe dict)."""
    names = list(report.startup) + [n for n in report.shutdown if n not in report.startup]
    tids = {name: i + 1 for i, name in enumerate(names)}
    events: list[dict[str, Any]] = [
        _meta("process_name", 0, {"name": f"lifecycle: {report.name}"}),
        _meta("thread_name", 0, {"name": "supervisor"}),
        _meta("thread_sort_index", 0, {"sort_index": 0}),
    ]
    for name, tid in tids.items():
        events.append(_meta("thread_name", tid, {"name": name}))
        events.append(_meta("thread_sort_index", tid, {"sort_index": tid}))
    if report.startup:
        events.append(_slice("startup", "supervisor", 0, 0.0, report.startup_elapsed, {
            "outcome": "failed" if report.startup_failed else "ok"}))
    if report.shutdown_elapsed:
        events.append(_slice("shutdown", "supervisor", 0, report.shutdown_began,
                             report.shutdown_elapsed, _close_args(report)))
    for name, rec in report.startup.items():
        events += _start_events(rec, tids[name])
    for name, records in report.shutdown.items():
        events += [_stage_event(rec, tids[name]) for rec in records.values()]
    for restart in report.restarts:  # instants: a restart or a health recovery began here
        if restart.service in tids:
            label = (f"recover #{restart.attempt}" if restart.where == "health"
                     else f"restart {restart.where} #{restart.attempt}")
            events.append({"name": label, "cat": "restart", "ph": "i", "s": "t", "pid": _PID,
                           "tid": tids[restart.service], "ts": _us(restart.began),
                           "args": {k: v for k, v in asdict(restart).items()
                                    if v is not None and k not in ("service", "began")}})
    for casc in report.cascades:  # a restart strategy's cascade, on the failed service's track
        if casc.service in tids:
            events.append(_slice(f"{casc.strategy} restart", "restart", tids[casc.service],
                                 casc.began, casc.elapsed, {
                                     "services": casc.services, "where": casc.where,
                                     "outcome": casc.outcome, "error": casc.error}))
    for rel in report.reloads:
        if rel.service in tids:
            label = "reload" if rel.outcome == "ok" else f"reload ({rel.outcome})"
            events.append(_slice(label, "reload", tids[rel.service], rel.began, rel.elapsed, {
                "outcome": rel.outcome, "deadline": rel.deadline, "error": rel.error,
                "stack": rel.stack, "reason": rel.reason}))
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {"app": report.name, "exit_code": int(report.exit_code), "ok": report.ok},
    }


def write_trace(report: LifecycleReport, path: str | os.PathLike[str]) -> None:
    """Write :func:`chrome_trace` of ``report`` to ``path`` as JSON."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(chrome_trace(report), f, indent=None, separators=(",", ":"))
        f.write("\n")
