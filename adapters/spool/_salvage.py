"""A damaged spool file: moved aside whole, every readable row copied into a fresh file.

Why not retry: a page that SQLite reports corrupt stays corrupt, so reading it again only
blocks every row behind it forever. Why not delete: the damaged file may still be worth
an expert's time (``sqlite3 FILE .recover``), so it is kept in ``quarantine/`` and named
in the log and the report, with the points that could not be read.

Rows are found by seeking the primary key (``id > ? ORDER BY id LIMIT 1``): a seek that
runs into a damaged page fails, so the search steps past it and then bisects back to the
first key that is reachable again; nothing readable is skipped.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from ._files import atomic, connect
from ._types import Synchronous
from ._unsettled import Unsettled

#: SQLITE_CORRUPT and SQLITE_NOTADB (a file that is not a database: wrong header).
CORRUPT_CODES = frozenset({11, 26})
MAX_SKIP_DOUBLINGS = 48  # ids up to 2**48: further than any AUTOINCREMENT will go
QUEUE_COLUMNS = "id, origin, created, points, data"
DEAD_COLUMNS = "id, origin, created, points, status, reason, data"


P = ParamSpec("P")
R = TypeVar("R")


class Salvageable(Protocol):
    _lock: Any
    _db: sqlite3.Connection | None

    def _quarantine(self, exc: sqlite3.DatabaseError) -> None: ...


S = TypeVar("S", bound=Salvageable)


def salvaging(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
    """Run ``method``; if SQLite finds the file damaged, quarantine it (keeping every
    readable row in a fresh file) and run ``method`` once more on that file."""

    @functools.wraps(method)
    def guarded(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            if not is_corruption(exc) or self._db is None:
                raise
            with self._lock:
                self._quarantine(exc)
            return method(self, *args, **kwargs)

    return guarded


def is_corruption(exc: BaseException) -> bool:
    """A damaged or foreign file, as opposed to a busy, full or read-only one."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    if getattr(exc, "sqlite_errorcode", None) in CORRUPT_CODES:
        return True
    text = str(exc)
    return "malformed" in text or "not a database" in text


@dataclass(frozen=True)
class Quarantine:
    """What one damaged file cost: ``lost`` and ``lost_dead`` are points per origin that
    were stored and could not be read; ``hidden`` means the damage also hid rows whose
    count cannot be read at all (the writer, which counts its own points, knows them)."""

    file: str
    reason: str
    saved: dict[str, int] = field(default_factory=dict)
    saved_dead: dict[str, int] = field(default_factory=dict)
    lost: dict[str, int] = field(default_factory=dict)
    lost_dead: dict[str, int] = field(default_factory=dict)
    lost_rows: int = 0
    hidden: bool = False

    def describe(self) -> str:
        counted = sum(self.lost.values()) + sum(self.lost_dead.values())
        what = f"{counted} point(s) in {self.lost_rows} unreadable row(s)"
        if self.hidden:
            what += " and rows in damaged pages whose count cannot be read"
        kept = sum(self.saved.values()) + sum(self.saved_dead.values())
        return f"damaged spool moved to {self.file} ({self.reason}): {what} lost, {kept} kept"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "reason": self.reason, "lost_rows": self.lost_rows,
                "points_lost": sum(self.lost.values()) + sum(self.lost_dead.values()),
                "hidden": self.hidden, "points_kept": sum(self.saved.values())
                + sum(self.saved_dead.values())}


@dataclass
class TableScan:
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    lost: Counter[str] = field(default_factory=Counter)
    lost_rows: int = 0
    hidden: bool = False


def move_aside(path: Path) -> Path:
    """Move the database and its WAL to ``quarantine/`` next to it (0700); drop the
    shared-memory index, which SQLite rebuilds."""
    into = path.parent / "quarantine"
    into.mkdir(mode=0o700, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = into / f"{path.stem}-{stamp}-{uuid.uuid4().hex[:6]}{path.suffix}"
    for suffix in ("", "-wal"):
        with contextlib.suppress(FileNotFoundError):
            os.replace(f"{path}{suffix}", f"{target}{suffix}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(f"{path}-shm")
    return target


def fit_header_to_length(file: Path) -> None:
    """A truncated file: SQLite refuses every read while the header claims more pages than
    the file has, so the header's page count (bytes 28-31) is set to what is there; the
    pages before the cut can then be read."""
    with contextlib.suppress(OSError), open(file, "r+b") as f:
        head = f.read(100)
        if len(head) < 100 or not head.startswith(b"SQLite format 3\0"):
            return
        page_size = int.from_bytes(head[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        pages = os.fstat(f.fileno()).st_size // max(page_size, 512)
        if 0 < pages < int.from_bytes(head[28:32], "big"):
            f.seek(28)
            f.write(pages.to_bytes(4, "big"))


def read_damaged(file: Path) -> tuple[TableScan, TableScan]:
    """Every readable row of the queue and the dead letters of a damaged file."""
    fit_header_to_length(file)
    try:
        db = sqlite3.connect(file, isolation_level=None)
    except sqlite3.Error:
        return TableScan(hidden=True), TableScan(hidden=True)
    try:
        return _scan(db, "queue", QUEUE_COLUMNS), _scan(db, "dead", DEAD_COLUMNS)
    finally:
        db.close()


def _scan(db: sqlite3.Connection, table: str, columns: str) -> TableScan:
    scan = _scan_rows(db, table, columns)
    if not scan.hidden:
        return scan
    try:  # the tally index lives in other pages: it tells what the damage hid
        tally = db.execute(f"SELECT id, origin, points FROM {table} INDEXED BY {table}_tally"
                           " ORDER BY id").fetchall()
    except sqlite3.DatabaseError:
        return scan
    kept = {row[0] for row in scan.rows}
    scan.lost.clear()
    scan.lost_rows = 0
    for rid, origin, points in tally:
        if rid not in kept:
            scan.lost[str(origin)] += int(points)
            scan.lost_rows += 1
    scan.hidden = False
    return scan


def _scan_rows(db: sqlite3.Connection, table: str, columns: str) -> TableScan:
    scan = TableScan()
    after = 0
    while True:
        try:
            found = _next_id(db, table, after)
        except sqlite3.DatabaseError:
            scan.hidden = True
            reached = _past_damage(db, table, after)
            if reached is None:
                return scan
            found = reached
        if found is None:
            return scan
        after = found
        try:
            scan.rows.append(tuple(db.execute(f"SELECT {columns} FROM {table} WHERE id = ?",
                                              (found,)).fetchone()))
        except sqlite3.DatabaseError:
            scan.lost_rows += 1
            try:  # the row's header may be readable when only its data pages are damaged
                origin, points = db.execute(f"SELECT origin, points FROM {table} WHERE id = ?",
                                            (found,)).fetchone()
                scan.lost[str(origin)] += int(points)
            except sqlite3.DatabaseError:
                scan.hidden = True


def _next_id(db: sqlite3.Connection, table: str, after: int) -> int | None:
    row = db.execute(f"SELECT id FROM {table} WHERE id > ? ORDER BY id LIMIT 1",
                     (after,)).fetchone()
    return None if row is None else int(row[0])


def _past_damage(db: sqlite3.Connection, table: str, failed: int) -> int | None:
    """The first id after ``failed`` that a seek reaches again (None: none does)."""
    good: int | None = None
    bad = failed
    for doubling in range(MAX_SKIP_DOUBLINGS):
        probe = failed + 2 ** doubling
        try:
            found = _next_id(db, table, probe)
        except sqlite3.DatabaseError:
            bad = probe
            continue
        good = probe
        if found is None:
            return None
        break
    if good is None:
        return None
    while good - bad > 1:  # bisect back: the smallest start that seeks past the damage
        mid = (good + bad) // 2
        try:
            _next_id(db, table, mid)
        except sqlite3.DatabaseError:
            bad = mid
        else:
            good = mid
    try:
        return _next_id(db, table, good)
    except sqlite3.DatabaseError:  # pragma: no cover - found above
        return None


def rebuild(db: sqlite3.Connection, moved: Path, reason: str, queue: TableScan,
            dead: TableScan, unsettled: Unsettled) -> Quarantine:
    """Copy the rows read from the damaged file into the fresh ``db`` (ids kept, settles
    held back by a full disk applied) in one transaction; what it cost."""
    rows = []
    for rid, origin, created, points, data in queue.rows:
        if unsettled.skip(rid):
            continue
        keep = unsettled.remaining(rid)
        rows.append((rid, origin, created, points, data) if keep is None
                    else (rid, origin, created, keep.count, keep.data))
    now = time.time()
    late_dead = [(p.origin, now, b.count, status, why, b.data)
                 for p in unsettled.rows.values() for status, why, b in p.dead]
    with atomic(db):
        db.executemany("INSERT INTO queue (id, origin, created, points, data)"
                       " VALUES (?, ?, ?, ?, ?)", rows)
        db.executemany("INSERT INTO dead (id, origin, created, points, status, reason, data)"
                       " VALUES (?, ?, ?, ?, ?, ?, ?)", dead.rows)
        db.executemany("INSERT INTO dead (origin, created, points, status, reason, data)"
                       " VALUES (?, ?, ?, ?, ?, ?)", late_dead)
    saved: Counter[str] = Counter()
    for _, origin, _, points, _ in rows:
        saved[origin] += points
    saved_dead: Counter[str] = Counter()
    for row in [*dead.rows, *late_dead]:  # origin and points sit at the same offsets from
        saved_dead[row[-6]] += row[-4]    # the end in both shapes
    return Quarantine(str(moved), reason, dict(saved), dict(saved_dead), dict(queue.lost),
                      dict(dead.lost), queue.lost_rows + dead.lost_rows,
                      queue.hidden or dead.hidden)


def replace_damaged(path: Path, synchronous: Synchronous, reason: str,
                    unsettled: Unsettled) -> tuple[sqlite3.Connection, Quarantine]:
    """Move the damaged database aside, open a fresh one in its place with every readable
    row; the fresh connection and what the damage cost."""
    moved = move_aside(path)
    queue, dead = read_damaged(moved)
    db = connect(path, synchronous)
    try:
        return db, rebuild(db, moved, reason, queue, dead, unsettled)
    except BaseException:
        db.close()
        raise
