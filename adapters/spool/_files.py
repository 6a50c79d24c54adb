"""The spool's files: a private directory, a private SQLite file, and the owner's lock.

Why apart from :class:`~lifecycle.adapters.spool.Spool`: these are the one-time decisions about the
file (permissions, page size, journal and fsync settings, schema), kept together so that
the queue logic reads on its own.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

from ._types import SpoolLockedError, Synchronous

try:
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX
    fcntl = None  # type: ignore[assignment]

#: Pages of a new spool file: a 5,000-line row (~300 KB) spans 10 pages instead of 70, so
#: reading and deleting it follow a short overflow chain.
PAGE_SIZE = 32768
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS queue (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " origin TEXT NOT NULL, created REAL NOT NULL, points INTEGER NOT NULL, data BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS dead (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " origin TEXT NOT NULL, created REAL NOT NULL, points INTEGER NOT NULL,"
    " status INTEGER NOT NULL, reason TEXT NOT NULL, data BLOB NOT NULL)",
    # A tally of every row in pages of its own: when a damaged page hides rows, the
    # salvage still reads how many points they held, and whose they were.
    "CREATE INDEX IF NOT EXISTS queue_tally ON queue (id, origin, points)",
    "CREATE INDEX IF NOT EXISTS dead_tally ON dead (id, origin, points)",
)


def private_directory(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)


def acquire_lock(directory: Path) -> int | None:
    """An exclusive ``flock`` on ``directory/lock``; the kernel drops it when we die."""
    if fcntl is None:  # pragma: no cover
        return None
    fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise SpoolLockedError(f"spool {str(directory)!r} is in use by another process"
                               ) from None
    return fd


def connect(path: Path, synchronous: Synchronous) -> sqlite3.Connection:
    """Open (creating it ``0600`` first) the database in WAL mode with its schema."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # for a new file; else a no-op
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        db.execute("PRAGMA busy_timeout=5000")
        # Debian builds SQLite with SECURE_DELETE, which zeroes every freed page: each
        # replayed row's pages rewritten through the WAL. FAST zeroes only what costs no
        # extra I/O; the file is private (0600) anyway.
        db.execute("PRAGMA secure_delete=FAST")
        for statement in SCHEMA:
            db.execute(statement)
    except BaseException:
        db.close()
        raise
    for suffix in ("-wal", "-shm"):  # SQLite copies the database's mode; enforce it anyway
        with contextlib.suppress(FileNotFoundError):
            os.chmod(f"{path}{suffix}", 0o600)
    return db


@contextlib.contextmanager
def atomic(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """The block as one ``BEGIN IMMEDIATE … COMMIT``; rolled back if it raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise


def transaction(db: sqlite3.Connection, body: Callable[[sqlite3.Connection], object], *,
                relax: bool = False) -> str | None:
    """``body(db)`` in BEGIN IMMEDIATE/COMMIT (``relax``: without an fsync, for a commit
    under ``synchronous=FULL``); None, or why it failed: ``"disk_full"`` or ``"error: ..."``.
    Damage to the file (``sqlite3.DatabaseError``) is raised, for the caller to salvage."""
    try:
        if relax:
            db.execute("PRAGMA synchronous=NORMAL")
        try:
            with atomic(db):
                body(db)
        finally:
            if relax:
                db.execute("PRAGMA synchronous=FULL")
    except sqlite3.OperationalError as exc:
        code = getattr(exc, "sqlite_errorcode", None)
        if code == getattr(sqlite3, "SQLITE_FULL", 13) or "disk is full" in str(exc):
            return "disk_full"
        return f"error: {exc}"
    return None
