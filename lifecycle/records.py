"""The records a report is made of: one per start attempt, stage, failure, restart, cascade,
reload, blocked event loop, and the exact counts per service. Text fields are size-capped when recorded."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._history import cap_text
from .outcome import Outcome

#: Size caps of the text kept per record (characters): a deep or chained traceback, an
#: exception with a megabyte message, or the stacks of many stuck threads stay readable
#: and bounded (the start and the end are kept, with how much was cut between them).
MAX_TRACEBACK = 8_192
MAX_MESSAGE = 2_048
MAX_STACK = 16_384


def _cap(text: str | None, limit: int) -> str | None:
    return None if text is None else cap_text(text, limit)


@dataclass
class Attempt:
    """One candidate's start attempt (a plain service has exactly one)."""

    candidate: str
    outcome: str
    elapsed: float
    error: str | None = None
    stack: str | None = None

    def __post_init__(self) -> None:
        self.error, self.stack = _cap(self.error, MAX_MESSAGE), _cap(self.stack, MAX_STACK)


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

    def __post_init__(self) -> None:
        self.error, self.stack = _cap(self.error, MAX_MESSAGE), _cap(self.stack, MAX_STACK)

    @property
    def degraded(self) -> bool:
        """A Fallback runs on a candidate other than its first (its preferred one)."""
        return self.outcome == Outcome.OK and bool(self.attempts) and \
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

    def __post_init__(self) -> None:
        self.error, self.stack = _cap(self.error, MAX_MESSAGE), _cap(self.stack, MAX_STACK)

    @property
    def clean(self) -> bool:
        return self.outcome == Outcome.OK


@dataclass
class FailureRecord:
    """An exception in ``run()``, a loop, a spawned task or thread, or a health check."""

    service: str
    where: str
    error: str
    traceback: str
    at: float  # seconds since the supervisor began (0.0 when recorded from a thread)
    action: str = ""

    def __post_init__(self) -> None:
        self.error = cap_text(self.error, MAX_MESSAGE)
        self.traceback = cap_text(self.traceback, MAX_TRACEBACK)


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

    def __post_init__(self) -> None:
        self.reason = cap_text(self.reason, MAX_MESSAGE)
        self.error = _cap(self.error, MAX_MESSAGE)


@dataclass
class ServiceCounts:
    """Exact counts for one service over the whole run, however few records were kept."""

    failures: int = 0  # exceptions recorded (run, loops, tasks, threads, recover, ...)
    restarts: int = 0  # restarts of a run() or loop
    recoveries: int = 0  # health recoveries
    incidents: int = 0  # health incidents opened
    escalations: int = 0  # restart or recovery limits reached


@dataclass
class CascadeRecord:
    """A restart strategy restarted ``services`` (start order) because ``service`` restarted."""

    service: str
    strategy: str
    where: str
    services: list[str]
    outcome: str = "ok"
    error: str | None = None
    began: float = 0.0
    elapsed: float = 0.0


@dataclass
class ReloadRecord:
    """One service's ``reload()``: SIGHUP or ``Supervisor.request_reload()``."""

    service: str
    outcome: str
    elapsed: float
    deadline: float
    error: str | None = None
    stack: str | None = None
    began: float = 0.0
    reason: str = ""


@dataclass
class BlockedLoop:
    """The event loop did not turn for ``seconds`` (the blocking detector, while running)."""

    seconds: float
    service: str  # "" when the code on the stack belongs to no service
    where: str  # file:line of the user's code on the loop thread's stack
    call: str  # what that line was calling, e.g. ``time.sleep``
    stack: str = ""

    def __post_init__(self) -> None:
        self.stack = cap_text(self.stack, MAX_STACK)

    def describe(self) -> str:
        """``loop blocked 1.5 s in service 'ingest' at app.py:42 in time.sleep``."""
        return f"loop blocked {self.seconds:.1f} s {whereabouts(self.service, self.where, self.call)}"


def whereabouts(service: str | None, where: str, call: str) -> str:
    """``in service 'ingest' at app.py:42 in time.sleep``."""
    who = f"in service {service!r}" if service else "outside any service"
    return f"{who} at {where} in {call}"
