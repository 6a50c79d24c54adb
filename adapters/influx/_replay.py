"""Replay of the spool, oldest row first, pipelined so that the server is never kept waiting.

Why pipelined: replaying one row means reading it, posting it, then deleting it, and only
the post needs the server. Done one after the other, the reads and the deletes (SQLite,
in worker threads) left the connection idle for a third of the time. Here a reader reads
the next row while the rows before it are posted, by as many lanes as the writer allows
requests in flight, and each lane settles its row (in a worker thread) while the other
lane's request is out. A settle is committed without an fsync (see :meth:`Spool.settle`:
a lost delete only re-sends points that overwrite themselves).

Rows are deleted only after the server accepted their lines. A row is read once per run:
the next read starts after the last id read, and each run starts again from the oldest
row, so a row left partly unsent by a failure comes first next time.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable

import anyio
import anyio.to_thread
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..spool import Batch, SpoolChunk
from ._buffer import LineBuffer
from ._delivery import Deliverer, Flight
from ._ledger import SpoolLedger

log = logging.getLogger("lifecycle.adapters.influx")


class Replayer:
    """Sends what the spool holds through the writer's :class:`Deliverer`; ``at`` is the
    monotonic time before which it should not run again (after a failure)."""

    def __init__(self, name: str, ledger: SpoolLedger, deliverer: Deliverer,
                 buffer: LineBuffer) -> None:
        self.name = name
        self._ledger = ledger
        self._spool = ledger.spool
        self._deliverer = deliverer
        self._buf = buffer
        self.failures = 0
        self.at = 0.0
        self._failed = False
        self.quiet = False  # disk mode: replay is the normal path, nothing to announce
        self.active = False  # between "replay started" and "replay finished"
        self.delivered = 0

    def due(self) -> bool:
        """Worth a run now: rows may be waiting, the breaker lets requests through, no
        backoff is running, and the buffer is not about to spill (live points first)."""
        return (self._ledger.backlog and self._deliverer.breaker.allow()
                and time.monotonic() >= self.at and not self._buf.high_water())

    async def run(self, lanes: Callable[[], int], more: Callable[[], bool]) -> bool:
        """Replay rows, ``lanes()`` requests at a time, while ``more()`` says so (it is
        asked before each next row is read) and the server accepts them; True when there
        was something to replay."""
        seen = self._ledger.appended
        try:
            first = await self._read(0)
        except (OSError, sqlite3.Error) as exc:
            log.error("%s: reading the spool for replay failed: %s", self.name, exc)
            self.later()
            return True
        if not first:
            self._ledger.mark_empty(seen)
            if self.active and not self._ledger.backlog:
                self.active = False
                log.info("%s: replay finished: the spool is empty (%d point(s) replayed)",
                         self.name, self.delivered)
            return False
        if not self.active and not self.quiet:
            self.active = True
            self.delivered = 0
            log.info("%s: replay of the spool %s started", self.name, self._spool.directory)
        self._failed = False
        held: dict[int, Batch] = {}
        send, receive = anyio.create_memory_object_stream[SpoolChunk]()
        try:
            async with anyio.create_task_group() as tg:
                with receive:
                    for _ in range(max(1, lanes())):
                        tg.start_soon(self._lane, receive.clone(), held)
                await self._reader(send, first, more, held)
        finally:
            for batch in held.values():
                self._buf.release(batch)
        if self._failed:
            self.later()
        else:
            self.failures = 0
        return True

    async def _read(self, after: int) -> list[SpoolChunk]:
        size = self._deliverer.sizer.current
        return await anyio.to_thread.run_sync(lambda: self._spool.peek(size, after=after))

    async def _reader(self, send: MemoryObjectSendStream[SpoolChunk], chunks: list[SpoolChunk],
                      more: Callable[[], bool], held: dict[int, Batch]) -> None:
        """Hands rows to the lanes in order; reads the next ones while they are posted."""
        with send:
            while chunks:
                for chunk in chunks:
                    if self._failed:
                        return
                    held[chunk.id] = chunk.batch  # rows in memory count against the caps
                    self._buf.hold(held[chunk.id])
                    await send.send(chunk)
                if self._failed or not more():
                    return
                try:
                    chunks = await self._read(chunks[-1].id)
                except (OSError, sqlite3.Error) as exc:
                    log.error("%s: reading the spool for replay failed: %s", self.name, exc)
                    self._failed = True
                    return

    async def _lane(self, receive: MemoryObjectReceiveStream[SpoolChunk],
                    held: dict[int, Batch]) -> None:
        """Posts rows one after the other and settles each after its answer."""
        with receive:
            async for chunk in receive:
                if self._failed:
                    self._buf.release(held.pop(chunk.id))
                    continue
                flight = Flight(chunk.batch)
                try:
                    done = await self._deliverer.deliver(flight, attempts=1)
                finally:
                    self._buf.release(held.pop(chunk.id))
                self.delivered += flight.delivered
                if flight.resolved:
                    try:
                        await anyio.to_thread.run_sync(self._ledger.settle_replay, chunk, flight)
                    except (OSError, sqlite3.Error) as exc:
                        log.error("%s: settling replayed row %d failed: %s", self.name,
                                  chunk.id, exc)
                        done = False
                if not done:
                    self._failed = True

    def later(self) -> None:
        """Back off after a failed replay (it counts toward the breaker too), for exactly
        the server's ``Retry-After`` when it sent one."""
        self.failures += 1
        retry_after, self._deliverer.last_retry_after = self._deliverer.last_retry_after, None
        self.at = time.monotonic() + self._deliverer.retry.delay(self.failures, retry_after)
