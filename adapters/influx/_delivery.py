"""Deliver one batch: pieces sized by the server's health, retries, breaker, 413 splits.

Why separate from the service: this is the part with the policy decisions (what is
retried, what is dead-lettered, when to give up), and it has no business knowing about
buffers, the spool's storage or the lifecycle. It imports two plain values from the spool
package, ``Batch`` (the lines of a request) and ``Rejected`` (lines refused for good, with
the server's answer), because that package, at the bottom, is where the types shared by
the writer and its spool live; never ``Spool`` itself. It reports progress on a
:class:`Flight` after every answer, so a caller that is cancelled mid-way knows exactly
which lines are resolved.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio

from ..spool import Batch, Rejected
from ._http import Outcome
from ._policy import BatchSizer, CircuitBreaker, RetryPolicy

log = logging.getLogger("lifecycle.adapters.influx")


@dataclass
class Flight:
    """A batch on its way: ``pending`` is what is not resolved yet (its oldest lines
    first); ``delivered`` lines were written and ``dead`` ones refused for good."""

    pending: Batch
    delivered: int = 0
    dead: list[Rejected] = field(default_factory=list)
    limit: int | None = None  # piece size cap learned from a 413

    @property
    def resolved(self) -> int:
        return self.delivered + sum(r.batch.count for r in self.dead)

    def rest(self) -> Batch:
        return self.pending

    def dead_batch(self) -> Batch:
        return Batch.join(r.batch for r in self.dead)


class Deliverer:
    """Sends flights through ``post`` under a shared breaker, sizer and retry policy."""

    def __init__(self, post: Callable[[bytes], Awaitable[Outcome]], retry: RetryPolicy,
                 breaker: CircuitBreaker, sizer: BatchSizer,
                 on_retry: Callable[[], None]) -> None:
        self._post = post
        self.retry = retry
        self.breaker = breaker
        self.sizer = sizer
        self._on_retry = on_retry
        self.last_error = ""
        self.last_retry_after: float | None = None  # the last failure's Retry-After
        self.posting = 0  # requests out now (flights may run side by side)

    async def deliver(self, flight: Flight, *, attempts: int,
                      on_written: Callable[[int], None] | None = None) -> bool:
        """Resolve the flight; True when every line was written or dead-lettered, False when
        it gave up (retries exhausted, breaker open, or half-open with another flight's
        probe out) leaving ``flight.rest()`` undelivered."""
        failed = 0
        while flight.pending.count:
            if not self.breaker.allow() or (self.posting and self.breaker.state != "closed"):
                return False  # open, or half-open with its one probe already out
            size = self.sizer.current if flight.limit is None else min(flight.limit,
                                                                       self.sizer.current)
            piece, after = flight.pending.split(size)
            self.posting += 1
            try:
                outcome = await self._post(piece.data)
            finally:
                self.posting -= 1
            if outcome.verdict == "ok":
                self.breaker.success()
                self.sizer.grow()
                failed = 0
                flight.pending = after
                flight.delivered += piece.count
                if on_written is not None:
                    on_written(piece.count)
                continue
            if outcome.verdict in ("too_large", "rejected"):
                self.breaker.success()  # the server is up; it is the batch that is wrong
                if outcome.verdict == "too_large" and piece.count > 1:
                    flight.limit = piece.count // 2
                    continue
                self._note(outcome, piece.count, "dead-lettered")
                flight.dead.append(Rejected(piece, outcome.status or 0, outcome.reason))
                flight.pending = after
                continue
            failed += 1
            self.last_retry_after = outcome.retry_after
            self.breaker.failure()
            self.sizer.shrink()
            self._note(outcome, piece.count, f"attempt {failed}/{attempts}")
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
