"""The two exceptions users catch: bad configuration, and a start that failed."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .report import LifecycleReport


class ConfigError(ValueError):
    """The services or the supervisor are configured wrongly; raised before anything starts.

    The message always names the offending service, stage or argument. ``cycle`` is set
    for a dependency cycle: the names along it, ``[a, b, ..., a]`` (a depends on b).
    """

    cycle: list[str] | None = None


class StartupError(RuntimeError):
    """A required service did not start; what had started was stopped again.

    ``report`` holds the whole story: every start attempt and the rollback.
    """

    def __init__(self, message: str, report: LifecycleReport) -> None:
        super().__init__(message)
        self.report = report
