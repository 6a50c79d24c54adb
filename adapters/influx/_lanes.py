"""Which sender lane takes what from the buffer, and how long an idle lane waits.

Why a policy of its own: the send loop should read as take, ship, wait. The decisions in
between (is the server reachable, how big a batch, is one due, may this lane go while the
breaker probes, when to look again) depend on the breaker, the sizer and the clock, and
are easy to test alone with a fake clock, like the policies in ``_policy.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ._policy import BatchSizer, CircuitBreaker

#: The shortest wait of an idle lane (seconds): a deadline already past is looked at again
#: at once, not in a busy loop.
MIN_IDLE = 0.001


class LanePolicy:
    """Decides for ``max_in_flight`` sender lanes. Lane 0 ships whatever is due, online or
    offline (to the spool), and replays the spool; the others ship only while the breaker
    is closed and no replay runs, so a half-open breaker sees one probe. With
    ``from_buffer=False`` (disk mode) no lane takes from the buffer: the committer moves it
    to the spool and lanes deliver from there.

    ``waiting`` and ``first_at`` are the buffer's points and when its oldest line arrived,
    on ``clock`` (the buffer's clock, ``time.monotonic``)."""

    def __init__(self, breaker: CircuitBreaker, sizer: BatchSizer, *, batch_size: int,
                 flush_interval: float, max_in_flight: int, from_buffer: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._breaker = breaker
        self._sizer = sizer
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_in_flight = max_in_flight
        self.from_buffer = from_buffer
        self._clock = clock

    def online(self, connected: bool) -> bool:
        """May a request go now (a server is configured and the breaker lets it)?"""
        return connected and self._breaker.allow()

    def window(self) -> int:
        """Requests that may be out at once: one probe while the breaker is not closed."""
        return self.max_in_flight if self._breaker.state == "closed" else 1

    def batch(self, *, online: bool) -> int:
        """Points per batch: what the server copes with now, or ``batch_size`` to spill."""
        return self._sizer.current if online else self.batch_size

    def full_batch(self, waiting: int) -> bool:
        """Is a whole batch waiting (worth waking a sender for)?"""
        return waiting >= self._sizer.current

    def due(self, waiting: int, first_at: float, size: int) -> bool:
        """A batch of ``size`` is waiting, or the oldest line has waited ``flush_interval``."""
        return waiting > 0 and (waiting >= size
                                or self._clock() - first_at >= self.flush_interval)

    def take(self, lane: int, *, waiting: int, first_at: float, connected: bool,
             replaying: bool) -> int:
        """Points ``lane`` takes from the buffer now; 0 for none."""
        if not self.from_buffer:
            return 0
        online = self.online(connected)
        size = self.batch(online=online)
        if not self.due(waiting, first_at, size):
            return 0
        if lane == 0 or (online and not replaying and self.window() > lane):
            return size
        return 0

    def replays(self, lane: int) -> bool:
        """Is ``lane`` the one that replays the spool (when no live batch is out)?"""
        return lane == 0

    def replay_yields(self, waiting: int, first_at: float) -> bool:
        """Should a replay stop for fresh points? Yes when a live batch is due."""
        return self.from_buffer and self.due(waiting, first_at, self._sizer.current)

    def idle(self, lane: int, *, waiting: int, first_at: float,
             replay_at: float | None) -> float:
        """Seconds an idle ``lane`` waits before it looks again (a write that fills a batch
        wakes it sooner): until the oldest line is due, and for the replaying lane until
        the breaker lets a request go and the replay's backoff ``replay_at`` has passed."""
        now = self._clock()
        waits = [self.flush_interval]
        if waiting:
            waits.append(first_at + self.flush_interval - now)
        if self.replays(lane) and replay_at is not None:
            waits.append(max(self._breaker.wait(), replay_at - now))
        return max(MIN_IDLE, min(waits))
