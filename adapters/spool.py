"""A durable on-disk queue for line-protocol batches that could not be delivered.

Why SQLite: it is a proven embedded store whose WAL mode survives a SIGKILL between any two
instructions (a committed transaction is in the WAL; an uncommitted one is rolled back on
the next open), so we do not invent a log format. One row holds one chunk of lines (up to
``chunk_points``), so spilling and replaying move megabytes per transaction, not rows.

The API is synchronous and thread-safe (one connection behind a lock): the async writer
calls it through ``anyio.to_thread.run_sync``. Nothing here raises for a full spool: a
write that does not fit returns an :class:`AppendResult` saying so and the spool reports
the distinct ``full`` state, so a dead disk is a state to report, not an exception storm.

Files: the directory is ``0700``; the database and its ``-wal``/``-shm`` files are ``0600``.
An advisory lock (``flock``) makes a spool directory single-owner, so two processes never
replay the same rows.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

try:
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("adapters.spool")

Synchronous = Literal["full", "normal", "off"]
DB_NAME = "spool.sqlite3"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS queue (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " origin TEXT NOT NULL, created REAL NOT NULL, points INTEGER NOT NULL, data BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS dead (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " origin TEXT NOT NULL, created REAL NOT NULL, points INTEGER NOT NULL,"
    " status INTEGER NOT NULL, reason TEXT NOT NULL, data BLOB NOT NULL)",
)


class SpoolState(str, enum.Enum):
    """``ok``; ``full``: the byte cap was reached (new data is refused and counted until
    replay brings the spool under 90% of the cap) or the disk is full (every append still
    tries, the first that succeeds clears the state); ``closed``."""

    OK = "ok"
    FULL = "full"
    CLOSED = "closed"


class SpoolLockedError(RuntimeError):
    """Another process owns this spool directory."""


@dataclass(frozen=True)
class AppendResult:
    """What happened to the lines handed to :meth:`Spool.append`: all stored or none."""

    stored: int
    refused: int = 0
    reason: str | None = None  # "full" (byte cap), "disk_full", "closed", "error: ..."

    @property
    def ok(self) -> bool:
        return self.refused == 0


@dataclass(frozen=True)
class SpoolChunk:
    """One stored row: lines in the order they were accepted, tagged with their origin."""

    id: int
    origin: str
    created: float
    lines: tuple[bytes, ...]

    @property
    def points(self) -> int:
        return len(self.lines)


@dataclass(frozen=True)
class DeadLetter:
    """A batch the server refused as a client error (400/401/403/404/413)."""

    id: int
    origin: str
    created: float
    status: int
    reason: str
    lines: tuple[bytes, ...]


@dataclass(frozen=True)
class Rejected:
    """Lines to move to the dead-letter table, with the server's answer."""

    lines: Sequence[bytes]
    status: int
    reason: str


@dataclass(frozen=True)
class SpoolStats:
    path: str
    state: SpoolState
    synchronous: Synchronous
    points: int
    chunks: int
    bytes: int
    dead_points: int
    dead_chunks: int
    dead_bytes: int
    max_bytes: int
    refused: int
    refused_reasons: dict[str, int]


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
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.directory, 0o700)
            self._lockfd = self._acquire_lock()
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                os.close(fd)
                os.chmod(self.path, 0o600)
                db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
                db.execute("PRAGMA busy_timeout=5000")
                for statement in _SCHEMA:
                    db.execute(statement)
                self._db = db
                self._chmod_side_files()
                row = db.execute("SELECT (SELECT COALESCE(SUM(LENGTH(data)), 0) FROM queue)"
                                 " + (SELECT COALESCE(SUM(LENGTH(data)), 0) FROM dead)").fetchone()
                self._bytes = int(row[0])
                self._full = "full" if self._bytes >= self.max_bytes else None
            except BaseException:
                self._release()
                raise
            return self

    def close(self) -> None:
        """Checkpoint the WAL into the database and close; idempotent."""
        with self._lock:
            self._closed = True
            if self._db is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._release()

    def __enter__(self) -> Spool:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _acquire_lock(self) -> int | None:
        if fcntl is None:  # pragma: no cover
            return None
        fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise SpoolLockedError(f"spool {str(self.directory)!r} is in use by another process"
                                   ) from None
        return fd

    def _release(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
        if self._lockfd is not None:
            os.close(self._lockfd)  # closing the descriptor releases the flock
            self._lockfd = None

    def _chmod_side_files(self) -> None:
        """SQLite copies the database's mode to -wal/-shm; enforce it anyway."""
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.chmod(f"{self.path}{suffix}", 0o600)

    # ----- state ------------------------------------------------------------------------
    @property
    def state(self) -> SpoolState:
        if self._db is None:
            return SpoolState.CLOSED
        return SpoolState.FULL if self._full else SpoolState.OK

    @property
    def full(self) -> bool:
        return self._full is not None

    def stats(self) -> SpoolStats:
        with self._lock:
            q = d = (0, 0, 0)
            if self._db is not None:
                q = self._db.execute("SELECT COALESCE(SUM(points), 0), COUNT(*),"
                                     " COALESCE(SUM(LENGTH(data)), 0) FROM queue").fetchone()
                d = self._db.execute("SELECT COALESCE(SUM(points), 0), COUNT(*),"
                                     " COALESCE(SUM(LENGTH(data)), 0) FROM dead").fetchone()
            return SpoolStats(str(self.path), self.state, self.synchronous, q[0], q[1], q[2],
                              d[0], d[1], d[2], self.max_bytes, sum(self._refused.values()),
                              dict(self._refused))

    def points_by_origin(self) -> dict[str, int]:
        """Points waiting in the queue per origin (to tell inherited rows from our own)."""
        with self._lock:
            rows = self._conn().execute("SELECT origin, SUM(points) FROM queue GROUP BY origin")
            return {origin: int(n) for origin, n in rows}

    # ----- writing ----------------------------------------------------------------------
    def append(self, lines: Sequence[bytes], *, origin: str | None = None) -> AppendResult:
        """Store ``lines`` (oldest first) in one transaction: all of them, or none.

        Refused (not raised) when the byte cap is reached or the disk is full.
        """
        return self._insert("queue", lines, origin, None)

    def dead_letter(self, lines: Sequence[bytes], *, status: int, reason: str,
                    origin: str | None = None) -> AppendResult:
        """Store a batch the server refused as a client error, for inspection or requeue."""
        return self._insert("dead", lines, origin, (status, reason))

    def _insert(self, table: str, lines: Sequence[bytes], origin: str | None,
                dead: tuple[int, str] | None) -> AppendResult:
        n = len(lines)
        if n == 0:
            return AppendResult(0)
        step = self.chunk_points
        chunks = [(min(step, n - i), b"\n".join(lines[i:i + step])) for i in range(0, n, step)]
        size = sum(len(r) for _, r in chunks)
        with self._lock:
            if self._db is None:
                return self._refuse(n, "closed")
            if self._full == "full" or self._bytes + size > self.max_bytes:
                return self._refuse(n, "full")
            now = time.time()
            org = origin or self.origin
            if dead is None:
                params: list[tuple[object, ...]] = [
                    (org, now, c, r) for c, r in chunks]
                sql = "INSERT INTO queue (origin, created, points, data) VALUES (?, ?, ?, ?)"
            else:
                params = [(org, now, c, dead[0], dead[1], r) for c, r in chunks]
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

    def _transaction(self, body: Callable[[sqlite3.Connection], object]) -> str | None:
        """Run ``body(db)`` in BEGIN IMMEDIATE/COMMIT; return a refusal reason on failure."""
        db = self._conn()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                body(db)
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            code = getattr(exc, "sqlite_errorcode", None)
            if code == getattr(sqlite3, "SQLITE_FULL", 13) or "disk is full" in str(exc):
                return "disk_full"
            log.error("spool %s: write failed: %s", self.path, exc)
            return f"error: {exc}"
        return None

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
    def peek(self, max_points: int) -> list[SpoolChunk]:
        """The oldest chunks, up to ``max_points`` in total (always at least one chunk)."""
        with self._lock:
            cur = self._conn().execute(
                "SELECT id, origin, created, points, data FROM queue ORDER BY id")
            out: list[SpoolChunk] = []
            total = 0
            for cid, origin, created, points, data in cur:
                if out and total + points > max_points:
                    break
                out.append(SpoolChunk(cid, origin, created, tuple(bytes(data).split(b"\n"))))
                total += points
            cur.close()
            return out

    def settle(self, chunk_id: int, *, remaining: Sequence[bytes] = (),
               rejected: Iterable[Rejected] = ()) -> None:
        """After a replay attempt: keep only ``remaining`` lines of the chunk (delete it when
        none are left) and move ``rejected`` lines to the dead letters, in one transaction.
        Rows are deleted only here, i.e. after the server accepted them."""
        rejected = list(rejected)
        with self._lock:
            row = self._conn().execute("SELECT origin, LENGTH(data) FROM queue WHERE id = ?",
                                       (chunk_id,)).fetchone()
            if row is None:
                return
            origin, old_size = row
            data = b"\n".join(remaining)
            now = time.time()

            def body(db: sqlite3.Connection) -> None:
                if remaining:
                    db.execute("UPDATE queue SET data = ?, points = ? WHERE id = ?",
                               (data, len(remaining), chunk_id))
                else:
                    db.execute("DELETE FROM queue WHERE id = ?", (chunk_id,))
                for r in rejected:
                    db.execute("INSERT INTO dead (origin, created, points, status, reason, data)"
                               " VALUES (?, ?, ?, ?, ?, ?)",
                               (origin, now, len(r.lines), r.status, r.reason, b"\n".join(r.lines)))

            error = self._transaction(body)
            if error is not None:
                raise OSError(f"spool {self.path}: could not settle chunk {chunk_id}: {error}")
            added = len(data) + sum(len(b"\n".join(r.lines)) for r in rejected)
            self._freed(old_size - added)

    def ack(self, ids: Iterable[int]) -> None:
        """Delete whole chunks the server accepted."""
        for cid in ids:
            self.settle(cid)

    # ----- dead letters -----------------------------------------------------------------
    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        with self._lock:
            rows = self._conn().execute(
                "SELECT id, origin, created, status, reason, data FROM dead ORDER BY id LIMIT ?",
                (limit,)).fetchall()
            return [DeadLetter(i, o, c, s, r, tuple(bytes(d).split(b"\n")))
                    for i, o, c, s, r, d in rows]

    def requeue_dead_letters(self, ids: Iterable[int] | None = None) -> dict[str, int]:
        """Move dead letters (all, or ``ids``) back to the queue, e.g. after fixing a token.
        Returns the points moved per origin."""
        where, args = self._id_filter(ids)
        with self._lock:
            moved = {origin: int(n) for origin, n in self._conn().execute(
                f"SELECT origin, SUM(points) FROM dead{where} GROUP BY origin", args)}

            def body(db: sqlite3.Connection) -> None:
                db.execute("INSERT INTO queue (origin, created, points, data) SELECT origin,"
                           f" created, points, data FROM dead{where} ORDER BY id", args)
                db.execute(f"DELETE FROM dead{where}", args)

            error = self._transaction(body)
            if error is not None:
                raise OSError(f"spool {self.path}: could not requeue: {error}")
            return moved

    def purge_dead_letters(self, ids: Iterable[int] | None = None) -> int:
        """Delete dead letters (all, or ``ids``); returns the number of points deleted."""
        where, args = self._id_filter(ids)
        with self._lock:
            n, size = self._conn().execute(
                f"SELECT COALESCE(SUM(points), 0), COALESCE(SUM(LENGTH(data)), 0) FROM dead{where}",
                args).fetchone()
            error = self._transaction(lambda db: db.execute(f"DELETE FROM dead{where}", args))
            if error is not None:
                raise OSError(f"spool {self.path}: could not purge: {error}")
            self._freed(int(size))
            return int(n)

    @staticmethod
    def _id_filter(ids: Iterable[int] | None) -> tuple[str, tuple[int, ...]]:
        if ids is None:
            return "", ()
        chosen = tuple(int(i) for i in ids)
        return f" WHERE id IN ({','.join('?' * len(chosen)) or 'NULL'})", chosen

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"spool {str(self.directory)!r} is not open")
        return self._db
