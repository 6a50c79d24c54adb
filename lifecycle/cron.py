"""``@cron("*/5 * * * *", tz="Europe/Rome")``: a background loop on a calendar schedule.

It runs on the same shutdown-aware loop as ``@every`` (lifecycle/every.py): the body runs
once per matching minute, a tick missed while the body ran is skipped (never bunched), the
wait ends at once when shutdown begins, ``every.STOP`` ends the loop and the restart policy
applies to a body that raises. Expressions are parsed by ``croniter`` (the ``cron`` extra),
when the class is defined, so a bad expression or time zone fails at import, naming the
method.

Wall time: the loop reads the wall clock once when it starts and follows it with the event
loop's monotonic clock, so a schedule is immune to the wall clock stepping while the app runs
(it is re-read at the next restart of the loop) and is exact under a simulated clock such as
trio's ``MockClock``. Daylight-saving changes are croniter's: a time that does not exist that
day is skipped, one that exists twice fires once.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from typing import Any

from ._backend import now
from .errors import ConfigError
from .every import F, LoopMarker, LoopSpec, Ticking, mark_loop

__all__ = ["CronSpec", "cron"]

#: Candidates passed over at most while looking for the next time (a DST gap skips <= 3600).
_MAX_SKIPPED = 10_000


def _croniter() -> Any:
    try:
        from croniter import croniter
    except ImportError:
        raise ImportError("@cron needs croniter: pip install 'lifecycle-supervisor[cron]'") from None
    return croniter


def _zone(tz: str | tzinfo | None) -> tzinfo:
    if tz is None:
        return timezone.utc
    if isinstance(tz, tzinfo):
        return tz
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ConfigError(f"tz={tz!r} is not a known time zone ({exc})") from None


@dataclass(frozen=True)
class CronSpec(LoopSpec):
    expression: str  # five (or six, with seconds) croniter fields; valid when constructed
    tz: tzinfo = field(default=timezone.utc)  # the zone the fields are read in

    def next_after(self, wall: float) -> float:
        """The first matching instant strictly after ``wall`` (epoch seconds).

        The fields match the zone's local wall-clock time. croniter is asked on naive local
        times and each answer is placed in the zone here, because croniter's own handling of
        aware datetimes fires twice on a spring-forward day (seen with croniter 5.0).
        """
        local = datetime.fromtimestamp(wall, self.tz).replace(tzinfo=None)
        candidates = _croniter()(self.expression, local)
        for _ in range(_MAX_SKIPPED):
            naive: datetime = candidates.get_next(datetime)
            placed = naive.replace(tzinfo=self.tz)  # fold=0: a repeated time fires once
            if placed.astimezone(timezone.utc).astimezone(self.tz).replace(tzinfo=None) != naive:
                continue  # skipped by a spring-forward change: that time does not exist
            if placed.timestamp() > wall:
                return placed.timestamp()
        raise RuntimeError(f"cron {self.expression!r}: no time found after {local}")

    async def ticks(self, service: Ticking) -> AsyncIterator[int]:
        origin_wall, origin = time.time(), now()
        last = float("-inf")
        count = 0
        while True:
            wall = origin_wall + (now() - origin)
            # max(): never the same instant twice, even if float rounding lands just before it
            due = self.next_after(max(wall, last))
            if not await service.sleep(max(0.0, due - wall)):
                return
            last = due
            yield count
            count += 1

    def describe(self) -> str:
        return f"cron {self.expression} ({self.tz})"


def cron(expression: str, *, tz: str | tzinfo | None = None) -> LoopMarker:
    """Run the decorated ``async def`` method of a Service on a cron schedule.

    ``tz`` is an IANA name (``"Europe/Rome"``) or a ``tzinfo``; the default is UTC. A bad
    expression, zone or a plain ``def`` raise :class:`ConfigError` naming the method.
    """

    def mark(fn: F) -> F:
        who = f"@cron({expression!r}) on {getattr(fn, '__qualname__', fn)!r}"
        is_async = inspect.iscoroutinefunction(fn)  # (kept apart: it would narrow fn's type)
        if not is_async:
            raise ConfigError(f"{who}: the method must be `async def`")
        if not isinstance(expression, str) or not _croniter().is_valid(expression):
            raise ConfigError(f"{who}: not a valid cron expression")
        try:
            zone = _zone(tz)
        except ConfigError as exc:
            raise ConfigError(f"{who}: {exc}") from None
        return mark_loop(CronSpec(expression, zone))(fn)

    return mark
