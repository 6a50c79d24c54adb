"""How one piece of user code ended: the outcomes every start, stage and restart reports."""

from __future__ import annotations

from enum import Enum


class Outcome(str, Enum):
    """A member *is* its string (``Outcome.OK == "ok"``), so reports, logs and JSON show
    the plain value; the enum names the complete set in one place."""

    OK = "ok"
    ERROR = "error"  #: the code raised
    TIMEOUT = "timeout"  #: cancelled at its deadline, and it ended
    CANCELLED = "cancelled"  #: cut short by a shutdown request, and it ended
    ABANDONED = "abandoned"  #: cancelled, but still running after the grace: left behind
    SKIPPED = "skipped"  #: never ran (the shutdown was forced first)

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)
