"""The writer's side of its spool: each operation moves the counters right after its commit.

Why here and not in the service: these calls run in worker threads (through
``anyio.to_thread.run_sync``, which finishes the call even when the awaiting task is
cancelled), so doing the accounting inside the same call is what keeps the counters exact
whatever is cancelled when.
"""

from __future__ import annotations

import logging

from ..spool import Batch, Quarantine, Rejected, Spool, SpoolChunk, SpoolState
from ._delivery import Flight
from ._stats import Counters

log = logging.getLogger("lifecycle.adapters.influx")


class SpoolLedger:
    """Spool operations with accounting, for points of ``origin`` (this writer) and of
    earlier runs (``inherited``). ``backlog`` says the queue may hold rows to replay."""

    def __init__(self, spool: Spool, counters: Counters, origin: str) -> None:
        self.spool = spool
        self._c = counters
        self.origin = origin
        self.backlog = False
        self.appended = 0  # rows added to the queue so far (tells a stale "empty" apart)
        self._opened_once = False
        spool.on_quarantine = self._quarantined
        self.name = "influx"
        self.quiet = False  # disk mode: every point is spooled, nothing to announce
        self.spooling = False

    def open(self) -> None:
        """Open the spool; on the first open, count what earlier runs left as inherited."""
        first = not self._opened_once and self.spool.state is SpoolState.CLOSED
        self.spool.open()
        self._opened_once = True
        if not first:
            return
        inherited = sum(n for origin, n in self.spool.points_by_origin().items()
                        if origin != self.origin)
        if inherited:
            self._c.add(inherited=inherited)
            self._queued()
            log.info("%d point(s) from an earlier run are waiting in the spool %s", inherited,
                     self.spool.directory)

    def _queued(self) -> None:
        self.appended += 1
        self.backlog = True

    def mark_empty(self, seen: int) -> None:
        """The queue was found empty after ``seen`` appends: no backlog, unless rows were
        added since (a spill that committed while the queue was being read)."""
        if self.appended == seen:
            self.backlog = False

    def spill(self, batch: Batch, *, reopen: bool = True) -> None:
        """Buffered lines to the queue; refused ones (spool full) are counted as dropped."""
        self.spill_all([batch], reopen=reopen)

    def spill_all(self, batches: list[Batch], *, reopen: bool = True) -> None:
        """:meth:`spill` for several batches, in one transaction."""
        n = sum(b.count for b in batches)
        if not n:
            return
        if reopen and self.spool.state is SpoolState.CLOSED:
            self.open()  # a write before start() overflowed the buffer
        result = self.spool.append_batches(batches, origin=self.origin)
        if result.ok:
            self._c.add(buffered=-n, in_spool=n, spooled=n)
            self._queued()
            if not self.spooling and not self.quiet:
                self.spooling = True
                log.warning("%s: spooling started: points go to %s until the server "
                            "takes them again", self.name, self.spool.directory)
        else:
            reason = "spool_full" if result.reason == "full" else (result.reason or "spool")
            self._c.drop(n, reason.split(":")[0])

    def end_spooling(self) -> None:
        """Live batches get through again (one did, or the breaker closed): if points were
        being spooled, that period ends."""
        if self.spooling:
            self.spooling = False
            log.info("%s: spooling ended: live batches are delivered again (%d point(s) "
                     "spooled so far)", self.name, self._c.get("spooled"))

    def resolve_live(self, dead: list[Rejected], rest: Batch) -> None:
        """After a live delivery: dead letters to their table, the undelivered rest spilled."""
        for rejected in dead:
            batch = rejected.batch
            result = self.spool.dead_letter(batch, status=rejected.status,
                                            reason=rejected.reason, origin=self.origin)
            if result.ok:
                self._c.add(buffered=-batch.count, dead_lettered=batch.count)
            else:
                self._c.drop(batch.count, f"dead_letter_{result.reason}".split(":")[0])
        self.spill(rest)

    def settle_replay(self, chunk: SpoolChunk, flight: Flight) -> None:
        """After a replay attempt: keep only the unresolved lines of the chunk."""
        if not self.spool.settle(chunk.id, remaining=flight.rest(), rejected=flight.dead):
            return  # the row was lost in a damaged file, and counted there
        dead = flight.resolved - flight.delivered
        if chunk.origin == self.origin:
            self._c.add(in_spool=-(flight.delivered + dead), written=flight.delivered,
                        dead_lettered=dead, replayed=flight.delivered)
        else:
            self._c.add(inherited_written=flight.delivered, inherited_dead_lettered=dead,
                        replayed=flight.delivered)

    def requeue(self) -> int:
        """Every dead letter back to the queue; ours return to ``in_spool``, an earlier
        run's count as newly inherited."""
        moved = self.spool.requeue_dead_letters()
        own = moved.pop(self.origin, 0)
        self._c.add(dead_lettered=-own, in_spool=own, inherited=sum(moved.values()))
        total = own + sum(moved.values())
        if total:
            self._queued()
        return total

    def _quarantined(self, found: Quarantine) -> None:
        """A damaged spool file was moved aside: what it held and was not carried over to
        the fresh file is lost. Our own points are counted exactly from the counters (the
        damage may hide how many a row held); an earlier run's as far as the file tells,
        or from what was inherited at the start."""
        own_kept = found.saved.get(self.origin, 0)
        own_dead_kept = found.saved_dead.get(self.origin, 0)
        self._c.add(quarantined=1)
        self._c.drop(self._c.get("in_spool") - own_kept, "spool_corrupt", source="in_spool")
        self._c.drop(self._c.get("dead_lettered") - own_dead_kept, "spool_corrupt",
                     source="dead_lettered")
        if self._opened_once:
            left = (self._c.get("inherited") - self._c.get("inherited_written")
                    - self._c.get("inherited_dead_lettered") - self._c.get("inherited_lost"))
            kept = sum(n for origin, n in found.saved.items() if origin != self.origin)
            lost = max(0, left - kept)
        else:  # found while opening: they were inherited, and lost at once
            lost = sum(n for origin, n in [*found.lost.items(), *found.lost_dead.items()]
                       if origin != self.origin)
            self._c.add(inherited=lost)
        self._c.add(inherited_lost=lost)
        self.backlog = True
