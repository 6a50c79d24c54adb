"""The dead-letter table's queries: batches the server refused for good, kept for a person."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from ._types import DeadLetter


def id_filter(ids: Iterable[int] | None) -> tuple[str, tuple[int, ...]]:
    """A WHERE clause for ``ids`` (all rows for None) and its parameters."""
    if ids is None:
        return "", ()
    chosen = tuple(int(i) for i in ids)
    return f" WHERE id IN ({','.join('?' * len(chosen)) or 'NULL'})", chosen


def read_dead_letters(db: sqlite3.Connection, limit: int) -> list[DeadLetter]:
    rows = db.execute("SELECT id, origin, created, status, reason, data FROM dead"
                      " ORDER BY id LIMIT ?", (limit,)).fetchall()
    return [DeadLetter(i, o, c, s, r, tuple(bytes(d).split(b"\n"))) for i, o, c, s, r, d in rows]


def dead_by_origin(db: sqlite3.Connection, where: str, args: tuple[int, ...]) -> dict[str, int]:
    return {origin: int(n) for origin, n in db.execute(
        f"SELECT origin, SUM(points) FROM dead{where} GROUP BY origin", args)}


def dead_size(db: sqlite3.Connection, where: str, args: tuple[int, ...]) -> tuple[int, int]:
    """Points and payload bytes of the chosen dead letters."""
    n, size = db.execute("SELECT COALESCE(SUM(points), 0), COALESCE(SUM(LENGTH(data)), 0)"
                         f" FROM dead{where}", args).fetchone()
    return int(n), int(size)


def requeue(db: sqlite3.Connection, where: str, args: tuple[int, ...]) -> None:
    """Move the chosen dead letters back to the queue (inside the caller's transaction)."""
    db.execute("INSERT INTO queue (origin, created, points, data) SELECT origin, created,"
               f" points, data FROM dead{where} ORDER BY id", args)
    db.execute(f"DELETE FROM dead{where}", args)
