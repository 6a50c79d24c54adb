"""Settles the server confirmed but the disk could not commit: the replay cursor of a full disk.

Why: deleting a replayed row is a write too (SQLite's WAL must grow), so on a full disk the
delete fails. Retrying the row would re-send the same first rows forever while nothing
drains. Instead the settle is remembered here, in memory: the row is skipped (or read as
what is left of it) by later reads, and the delete is committed as soon as a write
succeeds again. Only a crash in between sends those lines again (at-least-once), never a
loop.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from ._batch import Batch


@dataclass(frozen=True)
class PendingSettle:
    """One row's settle waiting for room: keep ``keep`` of its ``points`` lines, move
    ``dead`` (status, reason, lines) to the dead letters."""

    origin: str
    points: int
    size: int
    keep: Batch
    dead: tuple[tuple[int, str, Batch], ...]

    @property
    def freed(self) -> int:
        """Payload bytes the settle frees once committed."""
        return self.size - len(self.keep.data) - sum(len(b.data) for _, _, b in self.dead)


class Unsettled:
    """The pending settles, by row id."""

    def __init__(self) -> None:
        self.rows: dict[int, PendingSettle] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, chunk_id: int, pending: PendingSettle) -> None:
        self.rows[chunk_id] = pending

    def skip(self, chunk_id: int) -> bool:
        """The row is fully settled already: reads pass over it."""
        pending = self.rows.get(chunk_id)
        return pending is not None and not pending.keep.count

    def remaining(self, chunk_id: int) -> Batch | None:
        """What a read should return for a partly settled row (None: the row as stored)."""
        pending = self.rows.get(chunk_id)
        return pending.keep if pending is not None else None

    def adjust(self, queue: tuple[int, int, int], dead: tuple[int, int, int]
               ) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """(points, rows, bytes) of the queue and the dead letters as stored, corrected
        for the settles held here."""
        rows = self.rows.values()
        gone = sum(1 for p in rows if not p.keep.count)
        moved = [b for p in rows for _, _, b in p.dead]
        return ((queue[0] - sum(p.points - p.keep.count for p in rows), queue[1] - gone,
                 queue[2] - sum(p.size - len(p.keep.data) for p in rows)),
                (dead[0] + sum(b.count for b in moved), dead[1],
                 dead[2] + sum(len(b.data) for b in moved)))


def apply_settles(settles: dict[int, PendingSettle], db: sqlite3.Connection) -> None:
    """Write ``settles`` (inside the caller's transaction)."""
    now = time.time()
    for chunk_id, p in settles.items():
        if p.keep.count:
            db.execute("UPDATE queue SET data = ?, points = ? WHERE id = ?",
                       (p.keep.data, p.keep.count, chunk_id))
        else:
            db.execute("DELETE FROM queue WHERE id = ?", (chunk_id,))
        for status, reason, batch in p.dead:
            db.execute("INSERT INTO dead (origin, created, points, status, reason, data)"
                       " VALUES (?, ?, ?, ?, ?, ?)",
                       (p.origin, now, batch.count, status, reason, batch.data))
