"""The database interface app code is written against, whichever back end won the start.

``Database`` is what :class:`~lifecycle.adapters.postgres.PostgresDatabase` and
:class:`~lifecycle.adapters.sqlite.SQLiteDatabase` both implement, so that
``Fallback("db", PostgresDatabase.from_env(), SQLiteDatabase("app.db"))`` hands the app an
object it can use without knowing which one it got:

- SQL uses PostgreSQL's ``$1, $2`` placeholders on both (:func:`translate_placeholders`
  rewrites them for SQLite).
- Rows are plain ``dict`` objects keyed by column name on both.
- ``execute`` returns the number of rows an INSERT/UPDATE/DELETE touched (0 otherwise).
- ``transaction()`` nests (savepoints) and rolls back when its block raises.
- Every operation has a deadline; a stuck one raises :class:`QueryTimeout`.
"""

from __future__ import annotations

import asyncio
import functools
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, NoReturn, TypeVar

import anyio

from lifecycle import Service
from lifecycle.redact import safe_cause, scrub
from lifecycle.stage import check_timeout

T = TypeVar("T")

#: A row: column name -> value. Both back ends return plain dicts.
Row = dict[str, Any]

#: Share of ``check_timeout`` the health query may use, so that its own clear reason (not
#: the supervisor's cancellation) is what gets reported.
CHECK_SHARE = 0.9


class DatabaseError(Exception):
    """Base of every error a :class:`Database` raises, whichever back end it runs on.

    Driver errors never escape the portable interface: each is raised as one of the
    subclasses below, with the driver's exception as ``__cause__`` (dropped when its text
    would reveal a secret), and a message scrubbed of passwords.
    """


class IntegrityError(DatabaseError):
    """A constraint refused the change. ``kind`` says which: ``"unique"``, ``"not_null"``,
    ``"foreign_key"``, ``"check"``, or ``"other"``."""

    def __init__(self, message: str, kind: str = "other") -> None:
        super().__init__(message)
        self.kind = kind


class QueryError(DatabaseError):
    """The statement itself is wrong: syntax, unknown table or column, bad argument count
    or type. Retrying it will not help."""


class ConnectionLost(DatabaseError):
    """The connection broke during the operation (server killed or restarted, network
    cut). Whether a write before the break was committed is unknown."""


class DatabaseUnavailable(DatabaseError):
    """The database could not be reached or opened: not configured, refused, no answer in
    time, bad credentials. Its text never contains a password."""


class QueryTimeout(DatabaseError, TimeoutError):
    """An operation did not finish within its deadline (acquire, command, commit...)."""


class DatabaseClosed(DatabaseError):
    """The database is not started, or is closing or closed."""


def raise_as(error: DatabaseError | None, cause: Exception, secrets: Iterable[str]) -> NoReturn:
    """Raise ``error`` (the portable form of the driver's ``cause``) from ``cause``, unless
    ``cause`` would show a secret; ``cause`` itself when it has no portable form."""
    if error is None or error is cause:
        raise cause
    raise error from safe_cause(cause, list(secrets))


def require_asyncio(adapter: str, driver: str) -> None:
    """Refuse to start under trio with a clear reason: the drivers (asyncpg, aiosqlite) are
    asyncio libraries and otherwise fail deep inside with unrelated messages."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            f"{adapter} needs asyncio: {driver} is an asyncio library and does not run "
            "under trio; run the supervisor with backend='asyncio'") from None


class Database(Service, ABC):
    """A service owning a database connection (or pool) with one small, portable interface.

    Subclasses implement the abstract methods; app code should only use what is declared
    here so that it runs unchanged on every back end.
    """

    #: Deadline of a health check (``SELECT 1``); the supervisor enforces it as well.
    check_timeout = 2.0
    #: ``"postgresql"`` or ``"sqlite"``: for the few statements no SQL spelling serves
    #: both (an auto-generated id column; see docs/databases.md).
    dialect: ClassVar[str] = ""

    @abstractmethod
    async def execute(self, sql: str, *args: Any, timeout: float | None = None) -> int:
        """Run one statement; return the rows an INSERT/UPDATE/DELETE affected, else 0."""

    @abstractmethod
    async def executemany(
        self, sql: str, args_seq: Iterable[Sequence[Any]], *, timeout: float | None = None
    ) -> None:
        """Run one statement once per argument tuple, atomically (all or nothing)."""

    @abstractmethod
    async def fetch(self, sql: str, *args: Any, timeout: float | None = None) -> list[Row]:
        """Run a query; return every row."""

    @abstractmethod
    async def fetchrow(self, sql: str, *args: Any, timeout: float | None = None) -> Row | None:
        """Run a query; return its first row, or None when there is none."""

    async def fetchval(
        self, sql: str, *args: Any, column: int = 0, timeout: float | None = None
    ) -> Any:
        """Run a query; return one value of its first row (None when there is no row)."""
        row = await self.fetchrow(sql, *args, timeout=timeout)
        if row is None:
            return None
        return list(row.values())[column]

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Database]:
        """A transaction around the block: commit on success, roll back on any exception
        (cancellation included). Nested use opens a savepoint. While the block runs, every
        call on this database *from the same task* goes through the transaction; other tasks
        wait (SQLite) or use other connections (PostgreSQL)."""


# ---------------------------------------------------------------------------------------
# $n placeholders


def _is_ident_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_$"


@functools.lru_cache(maxsize=1024)
def translate_placeholders(sql: str) -> str:
    """Rewrite PostgreSQL's ``$1`` placeholders as SQLite's numbered ``?1`` ones.

    ``?NNN`` keeps the number, so ``$1`` used twice binds the same argument twice. Text in
    string literals (``'...'``), quoted identifiers (``"..."``, `````...`````, ``[...]``) and
    comments is left alone, and so is a ``$`` that is part of an identifier (``a$1``).
    """
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"`":
            j = _skip_quoted(sql, i, ch)
        elif ch == "[":
            j = _find_end(sql, "]", i + 1, 1)
        elif sql.startswith("--", i):
            j = _find_end(sql, "\n", i + 2, 1)
        elif sql.startswith("/*", i):
            j = _find_end(sql, "*/", i + 2, 2)
        elif (ch == "$" and i + 1 < n and sql[i + 1].isdigit()
              and (i == 0 or not _is_ident_char(sql[i - 1]))):
            j = i + 1
            while j < n and sql[j].isdigit():
                j += 1
            number = int(sql[i + 1:j])
            if number == 0:
                raise DatabaseError("placeholders are numbered from $1; found $0")
            out.append(f"?{number}")
            i = j
            continue
        else:
            j = i + 1
        out.append(sql[i:j])
        i = j
    return "".join(out)


def _skip_quoted(sql: str, start: int, quote: str) -> int:
    """Index just past the quoted text opened at ``start`` (a doubled quote is an escape)."""
    i = start + 1
    while True:
        end = sql.find(quote, i)
        if end < 0:
            return len(sql)
        if sql.startswith(quote * 2, end):
            i = end + 2
            continue
        return end + 1


def _find_end(sql: str, token: str, start: int, width: int) -> int:
    end = sql.find(token, start)
    return len(sql) if end < 0 else end + width


def rows_affected(status: str) -> int:
    """The row count of a PostgreSQL command tag (``"UPDATE 3"`` -> 3; DDL -> 0)."""
    parts = status.split()
    if parts and parts[0] in {"INSERT", "UPDATE", "DELETE", "MERGE"} and parts[-1].isdigit():
        return int(parts[-1])
    return 0


# ---------------------------------------------------------------------------------------
# helpers shared by the implementations


positive_seconds = check_timeout  # one validation of "seconds", the core's


@dataclass
class Checkout:
    """Who holds a connection (or the SQLite connection's lock), since when, doing what."""

    op: str
    task: str
    since: float = field(default_factory=time.monotonic)
    sql: str = ""

    def to_dict(self, secrets: Iterable[str] = ()) -> dict[str, Any]:
        held = round(time.monotonic() - self.since, 3)
        sql = scrub(" ".join(self.sql.split())[:120], secrets)
        return {"op": self.op, "task": self.task, "held_s": held, "sql": sql}

    def describe(self, secrets: Iterable[str] = ()) -> str:
        d = self.to_dict(secrets)
        text = f"{d['op']} by task {d['task']!r} for {d['held_s']:.1f} s"
        return f"{text} (last SQL: {d['sql']})" if d["sql"] else text


class Checkouts:
    """The connections currently checked out, so a close can say which ones it cut off."""

    def __init__(self) -> None:
        self._items: dict[int, Checkout] = {}
        self._next = 0

    @contextmanager
    def hold(self, op: str, sql: str = "") -> Iterator[Checkout]:
        self._next += 1
        key = self._next
        item = Checkout(op=op, task=current_task_name(), sql=sql)
        self._items[key] = item
        try:
            yield item
        finally:
            del self._items[key]

    def __len__(self) -> int:
        return len(self._items)

    def snapshot(self) -> list[Checkout]:
        return sorted(self._items.values(), key=lambda c: c.since)


class TaskLocal(Generic[T]):
    """A value bound to the current task only: tasks it starts do not inherit it.

    A transaction belongs to the task that opened it. A context variable alone would be
    copied into child tasks, which would then run statements inside their parent's
    transaction, concurrently, on the same connection.
    """

    def __init__(self, label: str) -> None:
        self._var: ContextVar[tuple[int, T] | None] = ContextVar(label, default=None)

    def get(self) -> T | None:
        entry = self._var.get()
        if entry is None or entry[0] != anyio.get_current_task().id:
            return None
        return entry[1]

    @contextmanager
    def bind(self, value: T) -> Iterator[None]:
        token = self._var.set((anyio.get_current_task().id, value))
        try:
            yield
        finally:
            self._var.reset(token)


def current_task_name() -> str:
    try:
        return anyio.get_current_task().name or "?"
    except RuntimeError:  # not inside an event loop
        return "?"


async def wait_until(condition: Callable[[], bool], timeout: float, step: float = 0.005) -> bool:
    """Poll ``condition()`` every ``step`` s until true or ``timeout`` s passed; return it.

    For things that offer no event to wait on (a thread ending).
    """
    with anyio.move_on_after(timeout):
        while not condition():
            await anyio.sleep(step)
    return bool(condition())


__all__ = [
    "CHECK_SHARE",
    "Checkout",
    "Checkouts",
    "ConnectionLost",
    "Database",
    "DatabaseClosed",
    "DatabaseError",
    "DatabaseUnavailable",
    "IntegrityError",
    "QueryError",
    "QueryTimeout",
    "Row",
    "TaskLocal",
    "raise_as",
    "require_asyncio",
    "rows_affected",
    "translate_placeholders",
    "wait_until",
]
