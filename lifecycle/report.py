"""``LifecycleReport``: what happened at start, while running, and at close; who is to blame.

Exit codes (``report.exit_code``, meant for ``sys.exit``):

====  ===================================================================================
0     clean: everything started, shut down within its deadlines, nothing leaked
1     startup failed: a required service did not start (it was rolled back)
2     configuration error (raised before anything starts; used by the CLI)
3     a required service failed while running (its ``run()`` failed, or its restart
      policy escalated with ``then="shutdown"``)
4     unclean shutdown: a stage failed, overran (timeout), was abandoned or skipped for
      lack of budget, or a service's tasks had to be cancelled
5     the shutdown was clean but threads or tasks leaked
75    restart requested: a degraded ``Fallback`` saw its preferred candidate answer again
      (``on_recovered="restart"``); the process manager should start the app afresh
128+N a second signal N forced the shutdown (130 for SIGINT, 143 for SIGTERM)
====  ===================================================================================
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ._history import KEEP_FIRST, KEEP_LAST, History
from ._signals import signal_name
from .outcome import Outcome
from .records import (
    MAX_MESSAGE,
    MAX_STACK,
    MAX_TRACEBACK,
    Attempt,
    BlockedLoop,
    CascadeRecord,
    FailureRecord,
    ReloadRecord,
    RestartRecord,
    ServiceCounts,
    StageRecord,
    StartRecord,
)

if TYPE_CHECKING:
    from .leaks import LeakReport

__all__ = [  # the records are re-exported: `from lifecycle.report import StageRecord` works
    "MAX_MESSAGE", "MAX_STACK", "MAX_TRACEBACK", "Attempt", "BlockedLoop", "CascadeRecord", "ExitCode",
    "FailureRecord", "LifecycleReport", "ReloadRecord", "RestartRecord", "ServiceCounts",
    "StageRecord", "StartRecord",
]


class ExitCode(enum.IntEnum):
    OK = 0
    STARTUP_FAILED = 1
    CONFIG_ERROR = 2
    SERVICE_FAILED = 3
    UNCLEAN_SHUTDOWN = 4
    LEAKS = 5
    RESTART_REQUESTED = 75  # EX_TEMPFAIL: "try again"; see docs/databases.md


@dataclass
class LifecycleReport:
    """What happened. ``failures`` and ``restarts`` keep the first and last few records of
    each service (``History``); ``counts`` has the exact numbers; ``health`` the last health
    and incident state of each checked service."""

    name: str = "app"
    startup: dict[str, StartRecord] = field(default_factory=dict)
    shutdown: dict[str, dict[str, StageRecord]] = field(default_factory=dict)
    failures: History[FailureRecord] = field(default_factory=History)
    restarts: History[RestartRecord] = field(default_factory=History)
    cascades: History[CascadeRecord] = field(default_factory=History)
    reloads: History[ReloadRecord] = field(default_factory=History)
    counts: dict[str, ServiceCounts] = field(default_factory=dict)
    health: dict[str, dict[str, Any]] = field(default_factory=dict)
    blocked: History[BlockedLoop] = field(default_factory=History)
    details: dict[str, dict[str, Any]] = field(default_factory=dict)
    leaks: LeakReport | None = None
    reason: str | None = None
    service_failed: bool = False
    restart_requested: str | None = None  # why (a Fallback's preferred candidate is back)
    forced_by: int | None = None
    #: ``serve()``/``async with`` was cancelled by its caller before startup completed
    startup_cancelled: bool = False
    startup_elapsed: float = 0.0
    shutdown_began: float = 0.0  # seconds since the supervisor began
    shutdown_elapsed: float = 0.0
    shutdown_budget: float = 0.0

    def __post_init__(self) -> None:
        self.failures = History(self.failures, on_add=self._count_failure)
        self.restarts = History(self.restarts, on_add=self._count_restart)
        self.cascades = History(self.cascades)
        self.reloads = History(self.reloads)

    def service_counts(self, service: str) -> ServiceCounts:
        """The counters of ``service`` (created at its first count)."""
        counts = self.counts.get(service)
        if counts is None:
            counts = self.counts[service] = ServiceCounts()
        return counts

    def _count_failure(self, record: FailureRecord) -> None:
        self.service_counts(record.service).failures += 1

    def _count_restart(self, record: RestartRecord) -> None:
        counts = self.service_counts(record.service)
        if record.where == "health":
            counts.recoveries += 1
        else:
            counts.restarts += 1

    # ----- verdicts ---------------------------------------------------------------------
    @property
    def startup_failed(self) -> bool:
        """A required start failed. A start cancelled or skipped because shutdown was asked
        for (a signal during startup) is not a failure."""
        return self.startup_cancelled or any(
            r.outcome in (Outcome.ERROR, Outcome.TIMEOUT, Outcome.ABANDONED) and not r.optional
            for r in self.startup.values())

    @property
    def degraded(self) -> dict[str, str]:
        """Fallbacks that ran on a lesser candidate: service -> the candidate that won."""
        return {name: rec.winner or "" for name, rec in self.startup.items() if rec.degraded}

    def stages(self) -> list[StageRecord]:
        return [rec for stages in self.shutdown.values() for rec in stages.values()]

    def culprits(self) -> list[StageRecord]:
        return [rec for rec in self.stages() if not rec.clean]

    @property
    def exit_code(self) -> int:
        if self.forced_by is not None:
            return 128 + self.forced_by
        if self.startup_failed:
            return ExitCode.STARTUP_FAILED
        if self.service_failed:
            return ExitCode.SERVICE_FAILED
        if self.restart_requested:
            return ExitCode.RESTART_REQUESTED
        if any(not rec.clean for stages in self.shutdown.values() for rec in stages.values()):
            return ExitCode.UNCLEAN_SHUTDOWN  # (a culprit: no list of them is needed here)
        if self.leaks is not None and not self.leaks.ok:
            return ExitCode.LEAKS
        return ExitCode.OK

    @property
    def ok(self) -> bool:
        """Nothing went wrong at all: clean exit, every start ok, no failure while running."""
        return (self.exit_code == ExitCode.OK and not self.failures
                and all(r.outcome == Outcome.OK for r in self.startup.values()))

    def stage(self, service: str, stage: str) -> StageRecord:
        return self.shutdown[service][stage]

    # ----- output -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-safe (no exception objects, only their scrubbed text)."""
        return {
            "name": self.name,
            "ok": self.ok,
            "exit_code": int(self.exit_code),
            "reason": self.reason,
            "forced_by": self.forced_by,
            "restart_requested": self.restart_requested,
            "degraded": self.degraded,
            "startup_cancelled": self.startup_cancelled,
            "startup_elapsed": self.startup_elapsed,
            "shutdown_began": self.shutdown_began,
            "shutdown_elapsed": self.shutdown_elapsed,
            "shutdown_budget": self.shutdown_budget,
            "startup": {k: asdict(v) for k, v in self.startup.items()},
            "shutdown": {k: {s: asdict(r) for s, r in v.items()} for k, v in self.shutdown.items()},
            "failures": self.failures.to_list(asdict),
            "restarts": self.restarts.to_list(asdict),
            "cascades": self.cascades.to_list(asdict),
            "reloads": self.reloads.to_list(asdict),
            "counts": {k: asdict(v) for k, v in self.counts.items()},
            "blocked": self.blocked.to_list(asdict),
            "omitted": {"failures": self.failures.omitted(), "restarts": self.restarts.omitted(),
                        "cascades": self.cascades.omitted(), "reloads": self.reloads.omitted(),
                        "blocked": self.blocked.omitted(),
                        "kept_per_service": {"first": KEEP_FIRST, "last": KEEP_LAST}},
            "health": {k: dict(v) for k, v in self.health.items()},
            "details": self.details,
            "leaks": self.leaks.to_dict() if self.leaks is not None else None,
        }

    def format(self) -> str:
        """A readable table, then every culprit with its error or the stack it was stuck in."""
        lines = [f"lifecycle report for {self.name!r}: exit code {int(self.exit_code)} "
                 f"({_verdict(self.exit_code)})"]
        if self.reason:
            lines.append(f"shutdown reason: {self.reason}")
        if self.forced_by is not None:
            lines.append(f"shutdown forced by a second {signal_name(self.forced_by)}")
        if self.restart_requested:
            lines.append(f"restart requested: {self.restart_requested}")
        for service, winner in self.degraded.items():
            lines.append(f"degraded: {service} ran on {winner}, not its preferred "
                         f"{self.startup[service].attempts[0].candidate}")
        if self.startup_cancelled:
            lines.append("startup was cancelled by the caller before it completed")
        lines.append(f"\nstartup ({self.startup_elapsed:.2f} s)")
        rows: list[tuple[str, ...]] = [("service", "outcome", "elapsed", "deadline", "detail")]
        for rec in self.startup.values():
            detail = rec.error or ""
            if len(rec.attempts) > 1 or rec.winner:
                detail = " -> ".join(f"{a.candidate}: {a.outcome}"
                                     + (f" ({a.error})" if a.error else "") for a in rec.attempts)
            flag = "" if rec.outcome == Outcome.OK else (" (optional)" if rec.optional else "")
            rows.append((rec.service, rec.outcome if rec.outcome == Outcome.OK else rec.outcome.upper(),
                         f"{rec.elapsed:.2f}s", f"{rec.deadline:g}s", detail + flag))
        lines += _table(rows)
        lines.append(f"\nshutdown ({self.shutdown_elapsed:.2f} s of {self.shutdown_budget:g} s budget)")
        rows = [("service", "stage", "outcome", "elapsed", "deadline", "detail")]
        for stage in self.stages():
            rows.append((stage.service, stage.stage,
                         stage.outcome if stage.clean else stage.outcome.upper(),
                         f"{stage.elapsed:.2f}s", f"{stage.deadline:g}s", stage.error or ""))
        lines += _table(rows)
        lines += self._format_running()
        culprits = self.culprits()
        starts = [r for r in self.startup.values() if r.outcome not in (Outcome.OK, Outcome.SKIPPED)]
        if culprits or starts:
            lines.append("\nculprits")
            for s in starts:
                lines.append(f"  {s.service}.start: {s.outcome} after {s.elapsed:.2f}s"
                             + (f": {s.error}" if s.error else ""))
                lines += _indent(s.stack)
            for c in culprits:
                lines.append(f"  {c.service}.{c.stage}: {c.outcome} after {c.elapsed:.2f}s "
                             f"(deadline {c.deadline:g}s)" + (f": {c.error}" if c.error else ""))
                lines += _indent(c.stack)
        if self.leaks is not None and not self.leaks.ok:
            lines.append("\nleaks")
            lines += ["  " + line for line in self.leaks.format().splitlines()]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()

    def _format_running(self) -> list[str]:
        """Counts per service, health incidents, then the kept failures and restarts."""
        lines: list[str] = []
        if self.counts:  # a service appears here at its first count
            lines.append("\nwhile running")
            rows: list[tuple[str, ...]] = [("service", "failures", "restarts", "recoveries",
                                            "incidents", "escalations", "health")]
            for name, c in self.counts.items():
                rows.append((name, str(c.failures), str(c.restarts), str(c.recoveries),
                             str(c.incidents), str(c.escalations), _health_note(self.health.get(name))))
            lines += _table(rows)
        sections: tuple[tuple[str, History[Any], Callable[[Any], str]], ...] = (
            ("failures while running", self.failures, _failure_line),
            ("restarts and recoveries", self.restarts, _restart_line),
            ("restart cascades", self.cascades, _cascade_line),
            ("reloads", self.reloads, _reload_line),
            ("event loop blocked", self.blocked, BlockedLoop.describe))
        for title, history, show in sections:
            if not history:
                continue
            omitted = history.omitted()
            note = (f" ({history.total()} in all; {sum(omitted.values())} left out: the first "
                    f"{KEEP_FIRST} and last {KEEP_LAST} of each service are kept)" if omitted else "")
            lines.append(f"\n{title}{note}")
            lines += [f"  {show(record)}" for record in history]
        return lines


def _failure_line(f: FailureRecord) -> str:
    return f"{f.service} {f.where}: {f.error}" + (f" -> {f.action}" if f.action else "")


def _restart_line(r: RestartRecord) -> str:
    return f"{r.service} {r.where} #{r.attempt}: {r.reason} -> {r.outcome}" + (
        f" ({r.error})" if r.error else "")


def _cascade_line(c: CascadeRecord) -> str:
    return (f"{c.service} {c.where} ({c.strategy}): stopped {', '.join(reversed(c.services))}; "
            f"started {', '.join(c.services)} -> {c.outcome}" + (f" ({c.error})" if c.error else ""))


def _reload_line(r: ReloadRecord) -> str:
    line = (f"{r.service}.reload: {r.outcome} after {r.elapsed:.2f}s (deadline {r.deadline:g}s)"
            + (f": {r.error}" if r.error else ""))
    return "\n".join([line, *_indent(r.stack)])


def _health_note(view: dict[str, Any] | None) -> str:
    if not view:
        return ""
    if view.get("escalated"):
        return f"escalated: {view.get('escalation')}"
    if view.get("recovering"):
        return f"recovering ({view.get('incident_recoveries')} of {view.get('max_recoveries')})"
    return "in incident" if view.get("incident") else ""


def _verdict(code: int) -> str:
    if code >= 128:
        return "forced"
    try:
        return ExitCode(code).name.lower().replace("_", " ")
    except ValueError:
        return "unknown"


def _indent(stack: str | None) -> list[str]:
    if not stack:
        return []
    return ["      " + line for line in stack.rstrip().splitlines()]


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    if len(rows) == 1:
        return ["  (none)"]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=False)) + "  " + r[-1]
            for r in rows]
