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
from ._lanes import LanePolicy
from ._ledger import SpoolLedger
from ._replay import Replayer
from ._settings import InfluxSettings
from ._stats import Counters


class Background:
    """Mixed into the writer; the attributes below are set by its constructor."""

    settings: InfluxSettings
    _c: Counters
    _buf: LineBuffer
    _deliverer: Deliverer
    _lanes: LanePolicy
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
        works on the one before: take what the lane policy says is due, ship it (or replay
        the spool), else wait until it is time to look again or a write wakes the lane."""
        while True:
            size = self._lanes.take(lane, waiting=len(self._buf), first_at=self._buf.first_at,
                                    connected=self._poster is not None,
                                    replaying=self._replaying)
            if size:
                await self._ship(self._buf.take(size))
            replayed = await self._replay() if self._lanes.replays(lane) else False
            if not size and not replayed:
                await self._idle(lane)

    async def _replay(self) -> bool:
        """Replay the spool while no live batch is out; True when there was something."""
        if self._in_flight or self._poster is None or not self._replayer.due():
            return False
        self._replaying = True
        try:
            return await self._replayer.run(
                self._lanes.window,
                lambda: not self._lanes.replay_yields(len(self._buf), self._buf.first_at))
        finally:
            self._replaying = False

    async def _idle(self, lane: int) -> None:
        """Wait as long as the lane policy says, or until a write wakes the senders."""
        wake = self._wake
        assert wake is not None
        replay_at = (self._replayer.at if self._ledger.backlog and self._poster is not None
                     else None)
        with anyio.move_on_after(self._lanes.idle(lane, waiting=len(self._buf),
                                                  first_at=self._buf.first_at,
                                                  replay_at=replay_at)):
            await wake.wait()
        if self._wake is wake:
            self._wake = anyio.Event()

    async def _commit_loop(self) -> None:
        """Disk mode: group commits of the buffer to the spool, ``commit_interval`` after
        the oldest waiting point arrived or as soon as ``batch_size`` points wait; each
        commit wakes the sender, which delivers from the spool."""
        while True:
            assert self._spill_wake is not None
            wake = self._spill_wake
            due = self._buf.first_at + self.settings.commit_interval - time.monotonic()
            if not self._buf or (due > 0 and len(self._buf) < self.settings.batch_size):
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
        if not self._lanes.online(self._poster is not None):
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
