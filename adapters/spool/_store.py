"""A durable on-disk queue of line batches: what could not be delivered yet, or everything.

Why SQLite: it is a proven embedded store whose WAL mode survives a SIGKILL between any two
instructions (a committed transaction is in the WAL; an uncommitted one is rolled back on
the next open), so we do not invent a log format. One row holds one chunk of lines (up to
``chunk_points``), so spilling and replaying move megabytes per transaction, not rows.

The API is synchronous and thread-safe (one connection behind a lock): the async writer
calls it through ``anyio.to_thread.run_sync``. Nothing here raises for a full spool: a
write that does not fit returns an :class:`AppendResult` saying so and the spool reports
the distinct ``full`` state, so a dead disk is a state to report, not an exception storm.

Files: the directory is ``0700``, the database files ``0600``; a ``flock`` makes the
directory single-owner. A damaged file is quarantined (see ``_salvage``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from ._batch import Batch, as_batch
from ._dead import dead_by_origin, dead_size, id_filter, read_dead_letters, requeue
from ._files import acquire_lock, connect, private_directory, transaction
from ._salvage import Quarantine, is_corruption, replace_damaged, salvaging
from ._types import (
    AppendResult,
    DeadLetter,
    Rejected,
    SpoolChunk,
    SpoolState,
    SpoolStats,
    Synchronous,
)
from ._unsettled import PendingSettle, Unsettled, apply_settles

__all__ = ["Spool"]

log = logging.getLogger("lifecycle.adapters.spool")

DB_NAME = "spool.sqlite3"


class Spool:
    """The spool in ``directory`` (created ``0700``); see the module docstring.

    ``max_bytes`` caps the stored payload (queue and dead letters together; SQLite's pages
    and WAL add some overhead on disk). ``synchronous`` is the fsync policy: ``"full"``
    (default) fsyncs the WAL at every commit, so a committed batch survives a power cut;
    ``"normal"`` survives a crash of the process (SIGKILL) but may lose the last commits
    on a power cut or kernel panic; ``"off"`` leaves flushing to the OS entirely.
    """

    def __init__(self, directory: str | os.PathLike[str], *, max_bytes: int = 256 * 2**20,
                 synchronous: Synchronous = "full", chunk_points: int = 5000,
                 origin: str | None = None) -> None:
        if synchronous not in ("full", "normal", "off"):
            raise ValueError(f"synchronous must be 'full', 'normal' or 'off', got {synchronous!r}")
        if max_bytes <= 0 or chunk_points <= 0:
            raise ValueError("max_bytes and chunk_points must be positive")
        self.directory = Path(directory)
        self.path = self.directory / DB_NAME
        self.max_bytes = int(max_bytes)
        self.synchronous: Synchronous = synchronous
        self.chunk_points = int(chunk_points)
        self.origin = origin or uuid.uuid4().hex
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._lockfd: int | None = None
        self._bytes = 0
        self._full: str | None = None  # why: "full" (byte cap) or "disk_full"
        self._closed = False
        self._refused: dict[str, int] = {}
        self._unsettled = Unsettled()
        #: Damaged files moved aside so far, and who to tell (called in the spool's thread).
        self.quarantines: list[Quarantine] = []
        self.on_quarantine: Callable[[Quarantine], None] | None = None

    def __repr__(self) -> str:
        return (f"<Spool {str(self.directory)!r} {self.state.value}"
                f" {self._bytes}/{self.max_bytes} B>")

    # ----- open / close -----------------------------------------------------------------
    def open(self) -> Spool:
        """Create or open the spool; idempotent. Raises SpoolLockedError if owned elsewhere."""
        with self._lock:
            if self._db is not None:
                return self
            self._closed = False
            private_directory(self.directory)
            self._lockfd = acquire_lock(self.directory)
            try:
                try:
                    self._db = connect(self.path, self.synchronous)
                    self._count_bytes()
                except sqlite3.DatabaseError as exc:
                    if not is_corruption(exc):
                        raise
                    self._quarantine(exc)
            except BaseException:
                self._release()
                raise
            return self

    def _count_bytes(self) -> None:
        row = self._conn().execute(
            "SELECT (SELECT COALESCE(SUM(LENGTH(data)), 0) FROM queue)"
            " + (SELECT COALESCE(SUM(LENGTH(data)), 0) FROM dead)").fetchone()
        self._bytes = int(row[0])
        self._full = "full" if self._bytes >= self.max_bytes else None

    def _quarantine(self, exc: sqlite3.DatabaseError) -> None:
        """Move the damaged file aside and carry every readable row (with the settles a
        full disk held back) into a fresh one; count, log and report the rest."""
        self._close_db()
        self._db, found = replace_damaged(self.path, self.synchronous, str(exc),
                                          self._unsettled)
        self._unsettled = Unsettled()
        self._count_bytes()
        self.quarantines.append(found)
        log.error("spool %s: %s", self.path, found.describe())
        if self.on_quarantine is not None:
            self.on_quarantine(found)

    def close(self) -> None:
        """Checkpoint the WAL into the database and close; idempotent."""
        with self._lock:
            self._closed = True
            if self._db is not None:
                self._commit_unsettled()
                if self._unsettled:
                    log.warning("spool %s: %d replayed row(s) could not be deleted (disk "
                                "full): a later run sends them again", self.path,
                                len(self._unsettled))
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._unsettled = Unsettled()
            self._release()

    def __enter__(self) -> Spool:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _release(self) -> None:
        self._close_db()
        if self._lockfd is not None:
            os.close(self._lockfd)  # closing the descriptor releases the flock
            self._lockfd = None

    def _close_db(self) -> None:
        """Close the connection, if open, whatever state the file is in."""
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    # ----- state ------------------------------------------------------------------------
    @property
    def state(self) -> SpoolState:
        if self._db is None:
            return SpoolState.CLOSED
        return SpoolState.FULL if self._full else SpoolState.OK

    @property
    def full(self) -> bool:
        return self._full is not None

    @property
    def unsettled(self) -> int:
        """Rows the server accepted whose delete waits for room on a full disk."""
        return len(self._unsettled)

    @salvaging
    def stats(self) -> SpoolStats:
        with self._lock:
            q = d = (0, 0, 0)
            if self._db is not None:
                q, d = (self._db.execute("SELECT COALESCE(SUM(points), 0), COUNT(*), COALESCE("
                                         f"SUM(LENGTH(data)), 0) FROM {t}").fetchone()
                        for t in ("queue", "dead"))
            q, d = self._unsettled.adjust(q, d)
            return SpoolStats(str(self.path), self.state, self.synchronous, *q, *d,
                              self.max_bytes, sum(self._refused.values()),
                              dict(self._refused), unsettled=len(self._unsettled))

    @salvaging
    def points_by_origin(self) -> dict[str, int]:
        """Points waiting in the queue per origin (to tell inherited rows from our own)."""
        with self._lock:
            rows = self._conn().execute("SELECT origin, SUM(points) FROM queue GROUP BY origin")
            return {origin: int(n) for origin, n in rows}

    # ----- writing ----------------------------------------------------------------------
    def append_batches(self, batches: Sequence[Batch], *, origin: str | None = None
                       ) -> AppendResult:
        """Store the lines of ``batches`` (oldest first, no copy) in one transaction: all of
        them, or none. Refused (not raised) when the byte cap is reached or the disk is full.
        """
        return self._insert("queue", batches, origin, None)

    def dead_letter(self, lines: Sequence[bytes] | Batch, *, status: int, reason: str,
                    origin: str | None = None) -> AppendResult:
        """Store a batch the server refused as a client error, for inspection or requeue."""
        return self._insert("dead", [as_batch(lines)], origin, (status, reason))

    @salvaging
    def _insert(self, table: str, batches: Sequence[Batch], origin: str | None,
                dead: tuple[int, str] | None) -> AppendResult:
        n = sum(b.count for b in batches)
        if n == 0:
            return AppendResult(0)
        rows = [row for b in batches for row in b.pieces(self.chunk_points)]
        size = sum(len(r.data) for r in rows)
        with self._lock:
            if self._db is None:
                return self._refuse(n, "closed")
            if self._full == "full" or self._bytes + size > self.max_bytes:
                return self._refuse(n, "full")
            self._commit_unsettled()
            now = time.time()
            org = origin or self.origin
            if dead is None:
                params: list[tuple[object, ...]] = [(org, now, r.count, r.data) for r in rows]
                sql = "INSERT INTO queue (origin, created, points, data) VALUES (?, ?, ?, ?)"
            else:
                params = [(org, now, r.count, dead[0], dead[1], r.data) for r in rows]
                sql = ("INSERT INTO dead (origin, created, points, status, reason, data)"
                       " VALUES (?, ?, ?, ?, ?, ?)")
            error = self._transaction(lambda db: db.executemany(sql, params))
            if error is not None:
                return self._refuse(n, error)
            self._bytes += size
            if self._full == "disk_full":  # the disk has room again
                self._full = None
            if self._bytes >= self.max_bytes:
                self._mark_full("full")
            return AppendResult(n)

    def _transaction(self, body: Callable[[sqlite3.Connection], object], *,
                     durable: bool = True) -> str | None:
        """Run ``body(db)`` in one transaction; a refusal reason on failure. ``durable=False``
        commits without an fsync even under ``synchronous="full"``."""
        error = transaction(self._conn(), body, relax=not durable and self.synchronous == "full")
        if error not in (None, "disk_full"):
            log.error("spool %s: write failed: %s", self.path, error)
        return error

    def _refuse(self, n: int, reason: str) -> AppendResult:
        if reason in ("full", "disk_full"):
            self._mark_full(reason)
        key = reason.split(":")[0]
        self._refused[key] = self._refused.get(key, 0) + n
        return AppendResult(0, n, reason)

    def _mark_full(self, reason: str) -> None:
        if self._full is None:
            self._full = reason
            log.warning("spool %s is full (%s): new batches are refused and counted until "
                        "replay frees space", self.path, reason)

    def _freed(self, size: int) -> None:
        self._bytes = max(0, self._bytes - size)
        if self._full and self._bytes < self.max_bytes * 0.9:
            self._full = None
            log.info("spool %s has room again", self.path)

    # ----- reading and settling ---------------------------------------------------------
    @salvaging
    def peek(self, max_points: int, *, after: int = 0) -> list[SpoolChunk]:
        """The oldest chunks with an id above ``after``, up to ``max_points`` in total
        (always at least one chunk when there is one)."""
        with self._lock:
            db = self._conn()
            ids: list[int] = []
            total = 0
            skip = self._unsettled
            cur = db.execute("SELECT id, points FROM queue WHERE id > ? ORDER BY id", (after,))
            for cid, points in cur:
                if skip.skip(cid):
                    continue
                if ids and total + points > max_points:
                    break
                ids.append(cid)
                total += points
            cur.close()
            out = []
            for cid in ids:
                row = db.execute("SELECT origin, created, points, data FROM queue WHERE id = ?",
                                 (cid,)).fetchone()
                left = skip.remaining(cid)
                if left is None:
                    out.append(SpoolChunk(cid, row[0], row[1], row[2], bytes(row[3])))
                else:
                    out.append(SpoolChunk(cid, row[0], row[1], left.count, left.data))
            return out

    @salvaging
    def settle(self, chunk_id: int, *, remaining: Sequence[bytes] | Batch = (),
               rejected: Iterable[Rejected] = ()) -> bool:
        """After a replay attempt: keep only ``remaining`` lines of the chunk (delete it when
        none are left) and move ``rejected`` lines to the dead letters, in one transaction.
        Rows are deleted only here, i.e. after the server accepted them.

        The commit is not fsynced whatever the policy: a settle lost to a power cut only
        sends those lines again, and they overwrite themselves (their timestamps were
        fixed when they were accepted). False when the row is gone (a damaged file lost
        it: it was counted there)."""
        keep = as_batch(remaining)
        dead = tuple((r.status, r.reason, r.batch) for r in rejected)
        with self._lock:
            row = self._conn().execute("SELECT origin, LENGTH(data), points FROM queue"
                                       " WHERE id = ?", (chunk_id,)).fetchone()
            if row is None:
                return False
            earlier = self._unsettled.rows.get(chunk_id)
            if earlier is not None:  # a second settle of what was left of the row
                dead = earlier.dead + dead
            pending = PendingSettle(row[0], int(row[2]), int(row[1]), keep, dead)
            self._commit_unsettled()
            error = self._transaction(lambda db: apply_settles({chunk_id: pending}, db),
                                      durable=False)
            if error == "disk_full":
                if not self._unsettled:
                    log.warning("spool %s: the disk is full, replayed rows cannot be deleted"
                                " yet: they are skipped and deleted once there is room",
                                self.path)
                self._unsettled.add(chunk_id, pending)
                return True
            if error is not None:
                raise OSError(f"spool {self.path}: could not settle chunk {chunk_id}: {error}")
            self._unsettled.rows.pop(chunk_id, None)
            self._freed(pending.freed)
            return True

    def _commit_unsettled(self) -> None:
        """Commit the settles a full disk held back, if there is room now."""
        if not self._unsettled:
            return
        rows = dict(self._unsettled.rows)
        if self._transaction(lambda db: apply_settles(rows, db), durable=False) is None:
            self._unsettled = Unsettled()
            self._freed(sum(p.freed for p in rows.values()))
            log.info("spool %s: %d replayed row(s) deleted now that the disk has room",
                     self.path, len(rows))

    # ----- dead letters -----------------------------------------------------------------
    @salvaging
    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        with self._lock:
            return read_dead_letters(self._conn(), limit)

    @salvaging
    def requeue_dead_letters(self, ids: Iterable[int] | None = None) -> dict[str, int]:
        """Move dead letters (all, or ``ids``) back to the queue, e.g. after fixing a token.
        Returns the points moved per origin."""
        where, args = id_filter(ids)
        with self._lock:
            moved = dead_by_origin(self._conn(), where, args)
            error = self._transaction(lambda db: requeue(db, where, args))
            if error is not None:
                raise OSError(f"spool {self.path}: could not requeue: {error}")
            return moved

    @salvaging
    def purge_dead_letters(self, ids: Iterable[int] | None = None) -> int:
        """Delete dead letters (all, or ``ids``); returns the number of points deleted."""
        where, args = id_filter(ids)
        with self._lock:
            n, size = dead_size(self._conn(), where, args)
            error = self._transaction(lambda db: db.execute(f"DELETE FROM dead{where}", args))
            if error is not None:
                raise OSError(f"spool {self.path}: could not purge: {error}")
            self._freed(size)
            return n

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"spool {str(self.directory)!r} is not open")
        return self._db
