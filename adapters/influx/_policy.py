"""How hard the writer pushes a struggling server: retry delays, a breaker, batch sizes.

Why three small policies instead of one loop: each answers a separate question (how long
to wait before the next attempt; whether to attempt at all; how much to send) and each is
easy to test on its own with a fake clock.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff ``base * 2**(attempt-1)`` capped at ``cap``, minus up to
    ``jitter`` of it at random (so writers that failed together do not retry together).
    A server's ``Retry-After`` replaces the computed delay."""

    max_attempts: int = 5
    base: float = 0.5
    cap: float = 30.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not (0 < self.base <= self.cap) or not 0 <= self.jitter <= 1:
            raise ValueError("retry backoff needs 0 < base <= cap and 0 <= jitter <= 1")

    def delay(self, attempt: int, retry_after: float | None = None,
              rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if retry_after is not None:
            return max(0.0, retry_after)
        delay = min(self.cap, self.base * 2.0 ** min(attempt - 1, 60))
        return delay * (1.0 - self.jitter * rand())


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class CircuitBreaker:
    """Closed -> open after ``threshold`` consecutive failures -> half-open after the open
    period, when one probe may go; its success closes, its failure reopens for twice as
    long (up to ``reset_max``). Stops a writer from hammering a dead server."""

    def __init__(self, threshold: int = 5, reset: float = 5.0, reset_max: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if threshold < 1 or not 0 < reset <= reset_max:
            raise ValueError("breaker needs threshold >= 1 and 0 < reset <= reset_max")
        self.threshold = threshold
        self.reset = reset
        self.reset_max = reset_max
        self._clock = clock
        self._failures = 0
        self._open_for = reset
        self._open_until: float | None = None
        self.opened = 0  # times it opened, for the report
        #: Told "open" when it opens from closed and "closed" when it closes again (not on
        #: each failed probe): one log line per outage.
        self.on_change: Callable[[str], None] | None = None

    @property
    def state(self) -> str:
        if self._open_until is None:
            return "closed"
        return "open" if self._clock() < self._open_until else "half_open"

    def allow(self) -> bool:
        """May a request go now? (In half-open state: the probe.)"""
        return self.state != "open"

    def wait(self) -> float:
        """Seconds until a request may go (0 when it may go now)."""
        if self._open_until is None:
            return 0.0
        return max(0.0, self._open_until - self._clock())

    def success(self) -> None:
        was_open = self._open_until is not None
        self._failures = 0
        self._open_until = None
        self._open_for = self.reset
        if was_open and self.on_change is not None:
            self.on_change("closed")

    def failure(self) -> None:
        self._failures += 1
        if self._open_until is not None:  # a failed probe: back off further
            self._open_for = min(self.reset_max, self._open_for * 2)
            self._trip(self._open_for)
        elif self._failures >= self.threshold:
            self._trip(self._open_for)

    def trip(self, seconds: float) -> None:
        """Open now for at least ``seconds`` (a long ``Retry-After``)."""
        self._trip(max(seconds, self._open_for))

    def _trip(self, seconds: float) -> None:
        was_closed = self._open_until is None
        if was_closed or self.state == "half_open":
            self.opened += 1
        self._open_until = self._clock() + seconds
        if was_closed and self.on_change is not None:
            self.on_change("open")


class BatchSizer:
    """Halve the batch while the server struggles (timeout, 429, 5xx), double it again on
    each success, between ``minimum`` and ``maximum``."""

    def __init__(self, maximum: int, minimum: int | None = None) -> None:
        if maximum < 1:
            raise ValueError("batch_size must be at least 1")
        self.maximum = maximum
        self.minimum = max(1, min(maximum, minimum if minimum is not None else maximum // 32))
        self.current = maximum

    def shrink(self) -> None:
        self.current = max(self.minimum, self.current // 2)

    def grow(self) -> None:
        self.current = min(self.maximum, self.current * 2)
