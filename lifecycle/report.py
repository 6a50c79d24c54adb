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
import signal as _signal
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ._bounded import ABANDONED, ERROR, OK, SKIPPED, TIMEOUT

if TYPE_CHECKING:
    from .leaks import LeakReport


class ExitCode(enum.IntEnum):
    OK = 0
    STARTUP_FAILED = 1
    CONFIG_ERROR = 2
    SERVICE_FAILED = 3
    UNCLEAN_SHUTDOWN = 4
    LEAKS = 5
    RESTART_REQUESTED = 75  # EX_TEMPFAIL: "try again"; see docs/databases.md


@dataclass
class Attempt:
    """One candidate's start attempt (a plain service has exactly one)."""

    candidate: str
    outcome: str
    elapsed: float
    error: str | None = None
    stack: str | None = None


@dataclass
class StartRecord:
    service: str
    outcome: str
    elapsed: float
    deadline: float
    began: float = 0.0  # seconds since the supervisor began starting
    optional: bool = False
    error: str | None = None
    stack: str | None = None
    winner: str | None = None
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def degraded(self) -> bool:
        """A Fallback runs on a candidate other than its first (its preferred one)."""
        return self.outcome == OK and bool(self.attempts) and \
            self.winner not in (None, self.attempts[0].candidate)


@dataclass
class StageRecord:
    service: str
    stage: str
    deadline: float
    elapsed: float
    outcome: str
    error: str | None = None
    stack: str | None = None
    began: float = 0.0  # seconds since the supervisor began starting

    @property
    def clean(self) -> bool:
        return self.outcome == OK


@dataclass
class FailureRecord:
    """An exception in ``run()``, a loop, a spawned task or thread, or a health check."""

    service: str
    where: str
    error: str
    traceback: str
    at: float  # seconds since the supervisor began (0.0 when recorded from a thread)
    action: str = ""


@dataclass
class RestartRecord:
    """A restart of a ``run()`` or loop after it ended, or a health recovery."""

    service: str
    where: str
    attempt: int
    delay: float
    reason: str
    outcome: str = "ok"
    error: str | None = None
    began: float = 0.0


@dataclass
class LifecycleReport:
    name: str = "app"
    startup: dict[str, StartRecord] = field(default_factory=dict)
    shutdown: dict[str, dict[str, StageRecord]] = field(default_factory=dict)
    failures: list[FailureRecord] = field(default_factory=list)
    restarts: list[RestartRecord] = field(default_factory=list)
    details: dict[str, dict[str, Any]] = field(default_factory=dict)
    leaks: LeakReport | None = None
    reason: str | None = None
    service_failed: bool = False
    restart_requested: str | None = None  # why (a Fallback's preferred candidate is back)
    forced_by: int | None = None
    startup_elapsed: float = 0.0
    shutdown_began: float = 0.0  # seconds since the supervisor began
    shutdown_elapsed: float = 0.0
    shutdown_budget: float = 0.0

    # ----- verdicts ---------------------------------------------------------------------
    @property
    def startup_failed(self) -> bool:
        """A required start failed. A start cancelled or skipped because shutdown was asked
        for (a signal during startup) is not a failure."""
        return any(r.outcome in (ERROR, TIMEOUT, ABANDONED) and not r.optional
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
        if self.culprits():
            return ExitCode.UNCLEAN_SHUTDOWN
        if self.leaks is not None and not self.leaks.ok:
            return ExitCode.LEAKS
        return ExitCode.OK

    @property
    def ok(self) -> bool:
        """Nothing went wrong at all: clean exit, every start ok, no failure while running."""
        return (self.exit_code == ExitCode.OK and not self.failures
                and all(r.outcome == OK for r in self.startup.values()))

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
            "startup_elapsed": self.startup_elapsed,
            "shutdown_began": self.shutdown_began,
            "shutdown_elapsed": self.shutdown_elapsed,
            "shutdown_budget": self.shutdown_budget,
            "startup": {k: asdict(v) for k, v in self.startup.items()},
            "shutdown": {k: {s: asdict(r) for s, r in v.items()} for k, v in self.shutdown.items()},
            "failures": [asdict(f) for f in self.failures],
            "restarts": [asdict(r) for r in self.restarts],
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
            lines.append(f"shutdown forced by a second {_signame(self.forced_by)}")
        if self.restart_requested:
            lines.append(f"restart requested: {self.restart_requested}")
        for service, winner in self.degraded.items():
            lines.append(f"degraded: {service} ran on {winner}, not its preferred "
                         f"{self.startup[service].attempts[0].candidate}")
        lines.append(f"\nstartup ({self.startup_elapsed:.2f} s)")
        rows: list[tuple[str, ...]] = [("service", "outcome", "elapsed", "deadline", "detail")]
        for rec in self.startup.values():
            detail = rec.error or ""
            if len(rec.attempts) > 1 or rec.winner:
                detail = " -> ".join(f"{a.candidate}: {a.outcome}"
                                     + (f" ({a.error})" if a.error else "") for a in rec.attempts)
            flag = "" if rec.outcome == OK else (" (optional)" if rec.optional else "")
            rows.append((rec.service, rec.outcome.upper() if rec.outcome != OK else OK,
                         f"{rec.elapsed:.2f}s", f"{rec.deadline:g}s", detail + flag))
        lines += _table(rows)
        lines.append(f"\nshutdown ({self.shutdown_elapsed:.2f} s of {self.shutdown_budget:g} s budget)")
        rows = [("service", "stage", "outcome", "elapsed", "deadline", "detail")]
        for stage in self.stages():
            rows.append((stage.service, stage.stage,
                         stage.outcome if stage.clean else stage.outcome.upper(),
                         f"{stage.elapsed:.2f}s", f"{stage.deadline:g}s", stage.error or ""))
        lines += _table(rows)
        if self.failures:
            lines.append("\nfailures while running")
            for f in self.failures:
                lines.append(f"  {f.service} {f.where}: {f.error}" + (f" -> {f.action}" if f.action else ""))
        if self.restarts:
            lines.append("\nrestarts and recoveries")
            for r in self.restarts:
                lines.append(f"  {r.service} {r.where} #{r.attempt}: {r.reason} -> {r.outcome}"
                             + (f" ({r.error})" if r.error else ""))
        culprits = self.culprits()
        starts = [r for r in self.startup.values() if r.outcome not in (OK, SKIPPED)]
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


def _verdict(code: int) -> str:
    if code >= 128:
        return "forced"
    try:
        return ExitCode(code).name.lower().replace("_", " ")
    except ValueError:
        return "unknown"


def _signame(signum: int) -> str:
    try:
        return _signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


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
