"""The writer's background work: the senders, the spiller or committer, and the way a batch
taken out of the buffer is sent, spooled, or put back.

Why apart from :class:`~lifecycle.adapters.influx.InfluxWriter`: the service module says what
the writer promises (its API and stop stages); this one is the machinery that keeps those
promises while it runs, and the one place where a batch leaves the buffer.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import anyio
import anyio.to_thread

from ..spool import EMPTY, Batch
from ._barrier import Tickets
from ._buffer import LineBuffer
from ._delivery import Deliverer, Flight
from ._http import Outcome, Poster
from ._ledger import SpoolLedger
from ._replay import Replayer
from ._stats import Counters


class Background:
    """Mixed into the writer; the attributes below are set by its constructor."""

    batch_size: int
    flush_interval: float
    commit_interval: float
    max_in_flight: int
    _c: Counters
    _buf: LineBuffer
    _deliverer: Deliverer
    _ledger: SpoolLedger
    _replayer: Replayer
    _tickets: Tickets
    _poster: Poster | None
    _wake: anyio.Event | None
    _spill_wake: anyio.Event | None
    _in_flight: int
    _replaying: bool
    _disk: bool

    async def _send_loop(self, lane: int) -> None:
        """One of ``max_in_flight`` senders, so that the next batch goes out while the server
        works on the one before. Lane 0 also ships offline (to the spool) and replays the
        spool when no live batch is out; the others only ship while the breaker is closed."""
        while True:
            did = False
            online = self._poster is not None and self._deliverer.breaker.allow()
            size = self._deliverer.sizer.current if online else self.batch_size
            if not self._disk and self._live_due(size) and (
                    lane == 0 or (online and not self._replaying and self._window() > lane)):
                await self._ship(self._buf.take(size))
                did = True
            if lane == 0 and not self._in_flight and self._poster is not None \
                    and self._replayer.due():
                self._replaying = True
                try:
                    did = await self._replayer.run(
                        self._window, lambda: self._disk
                        or not self._live_due(self._deliverer.sizer.current)) or did
                finally:
                    self._replaying = False
            if not did:
                wake = self._wake
                assert wake is not None
                with anyio.move_on_after(self._idle_time(lane)):
                    await wake.wait()
                if self._wake is wake:
                    self._wake = anyio.Event()

    def _window(self) -> int:
        """Requests that may be out at once: one probe while the breaker is half-open."""
        return self.max_in_flight if self._deliverer.breaker.state == "closed" else 1

    def _live_due(self, size: int) -> bool:
        """A full batch is waiting, or the oldest waiting line has waited long enough."""
        return bool(self._buf) and (len(self._buf) >= size or time.monotonic()
                                    - self._buf.first_at >= self.flush_interval)

    def _idle_time(self, lane: int) -> float:
        waits = [self.flush_interval]
        if self._buf:
            waits.append(self._buf.first_at + self.flush_interval - time.monotonic())
        if lane == 0 and self._ledger.backlog and self._poster is not None:
            waits.append(max(self._deliverer.breaker.wait(), self._replayer.at - time.monotonic()))
        return max(0.001, min(waits))

    async def _commit_loop(self) -> None:
        """Disk mode: group commits of the buffer to the spool, ``commit_interval`` after
        the oldest waiting point arrived or as soon as ``batch_size`` points wait; each
        commit wakes the sender, which delivers from the spool."""
        while True:
            assert self._spill_wake is not None
            wake = self._spill_wake
            due = self._buf.first_at + self.commit_interval - time.monotonic()
            if not self._buf or (due > 0 and len(self._buf) < self.batch_size):
                with anyio.move_on_after(due if self._buf else math.inf):
                    await wake.wait()
                if self._spill_wake is wake:
                    self._spill_wake = anyio.Event()
                continue
            await self._spill_batches(self._buf.drain())
            if self._wake is not None:
                self._wake.set()

    async def _spill_loop(self) -> None:
        assert self._spill_wake is not None
        while True:
            await self._spill_wake.wait()
            self._spill_wake = anyio.Event()
            while self._buf.high_water():
                await self._spill_batches(self._buf.take_batches(self._buf.above_half()))

    async def _spill_batches(self, batches: list[Batch]) -> None:
        """Batches taken from the buffer to the spool in one transaction."""
        with self._tickets.ticket():
            await self._commit(batches, lambda: self._ledger.spill_all(batches))

    async def _commit(self, batches: list[Batch], work: Callable[[], None]) -> None:
        """Run ``work`` (which stores ``batches``, taken from the buffer, and moves their
        counters) in a worker thread, the batches held against the caps meanwhile.

        A worker call that began always finishes (anyio waits for it even when the task
        is cancelled), so the batches are stored and counted; one cancelled before it
        began puts them back in front of the buffer. Either way nothing taken out is lost
        or counted twice, whatever is cancelled when."""
        began = False

        def call() -> None:
            nonlocal began
            began = True
            work()

        for batch in batches:
            self._buf.hold(batch)
        try:
            await anyio.to_thread.run_sync(call)
        except BaseException:
            if not began:
                for batch in reversed(batches):
                    self._buf.unshift(batch)
            raise
        finally:
            for batch in batches:
                self._buf.release(batch)

    async def _ship(self, batch: Batch) -> None:
        """Deliver (or, offline, spill) a batch taken from the buffer."""
        self._in_flight += 1
        try:
            with self._tickets.ticket():
                await self._ship_one(batch)
        finally:
            self._in_flight -= 1

    async def _ship_one(self, batch: Batch) -> None:
        if self._poster is None or not self._deliverer.breaker.allow():
            await self._spill_batches([batch])
        else:
            with self._buf.holding(batch):
                await self._send_live(batch, keep_rest=False)

    async def _send_live(self, batch: Batch, *, keep_rest: bool) -> bool:
        """Deliver fresh lines; what is left goes to the spool (or back to the buffer with
        ``keep_rest``). Cancellation puts every unresolved line back in the buffer."""
        flight = Flight(batch)
        try:
            done = await self._deliverer.deliver(
                flight, attempts=self._deliverer.retry.max_attempts,
                on_written=lambda n: self._c.add(buffered=-n, written=n))
        except BaseException:
            self._buf.unshift(Batch.join([flight.dead_batch(), flight.rest()]))
            raise
        if flight.delivered:
            self._ledger.end_spooling()
        rest = flight.rest()
        if keep_rest:
            self._buf.unshift(rest)
            rest = EMPTY
        if flight.dead or rest.count:
            dead = flight.dead
            await self._commit([flight.dead_batch(), rest],
                               lambda: self._ledger.resolve_live(dead, rest))
        return done

    async def _post(self, body: bytes) -> Outcome:
        assert self._poster is not None
        return await self._poster.post(body)
