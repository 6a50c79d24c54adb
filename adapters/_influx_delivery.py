"""Deliver one batch: pieces sized by the server's health, retries, breaker, 413 splits.

Why separate from the service: this is the part with the policy decisions (what is
retried, what is dead-lettered, when to give up), and it has no business knowing about
buffers, spools or the lifecycle. It reports progress on a :class:`Flight` after every
answer, so a caller that is cancelled mid-way knows exactly which lines are resolved.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import anyio

from ._influx_http import Outcome
from ._influx_policy import BatchSizer, CircuitBreaker, RetryPolicy
from .spool import Rejected

log = logging.getLogger("adapters.influx")


@dataclass
class Flight:
    """A batch on its way: ``lines[:pos]`` are resolved (``delivered`` of them written,
    the rest in ``dead``); ``lines[pos:]`` are not."""

    lines: list[bytes]
    pos: int = 0
    delivered: int = 0
    dead: list[Rejected] = field(default_factory=list)
    limit: int | None = None  # piece size cap learned from a 413

    def rest(self) -> list[bytes]:
        return self.lines[self.pos:]

    def dead_lines(self) -> list[bytes]:
        return [line for r in self.dead for line in r.lines]


class Deliverer:
    """Sends flights through ``post`` under a shared breaker, sizer and retry policy."""

    def __init__(self, post: Callable[[Sequence[bytes]], Awaitable[Outcome]], retry: RetryPolicy,
                 breaker: CircuitBreaker, sizer: BatchSizer,
                 on_retry: Callable[[], None]) -> None:
        self._post = post
        self.retry = retry
        self.breaker = breaker
        self.sizer = sizer
        self._on_retry = on_retry
        self.last_error = ""

    async def deliver(self, flight: Flight, *, attempts: int,
                      on_written: Callable[[int], None] | None = None) -> bool:
        """Resolve the flight; True when every line was written or dead-lettered, False when
        it gave up (retries exhausted, breaker open) leaving ``flight.rest()`` undelivered."""
        failed = 0
        while flight.pos < len(flight.lines):
            if not self.breaker.allow():
                return False
            size = self.sizer.current if flight.limit is None else min(flight.limit,
                                                                       self.sizer.current)
            piece = flight.lines[flight.pos:flight.pos + size]
            outcome = await self._post(piece)
            if outcome.verdict == "ok":
                self.breaker.success()
                self.sizer.grow()
                failed = 0
                flight.pos += len(piece)
                flight.delivered += len(piece)
                if on_written is not None:
                    on_written(len(piece))
                continue
            if outcome.verdict in ("too_large", "rejected"):
                self.breaker.success()  # the server is up; it is the batch that is wrong
                if outcome.verdict == "too_large" and len(piece) > 1:
                    flight.limit = len(piece) // 2
                    continue
                self._note(outcome, len(piece), "dead-lettered")
                flight.dead.append(Rejected(piece, outcome.status or 0, outcome.reason))
                flight.pos += len(piece)
                continue
            failed += 1
            self.breaker.failure()
            self.sizer.shrink()
            self._note(outcome, len(piece), f"attempt {failed}/{attempts}")
            if failed >= attempts:
                return False
            delay = self.retry.delay(failed, outcome.retry_after)
            if delay > self.retry.cap:  # a Retry-After longer than we hold a batch in memory
                self.breaker.trip(delay)
                return False
            self._on_retry()
            await anyio.sleep(delay)
        return True

    def _note(self, outcome: Outcome, n: int, what: str) -> None:
        self.last_error = outcome.reason
        log.warning("influx write of %d point(s) failed (%s): %s", n, what, outcome.reason)
