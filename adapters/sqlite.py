"""SQLite through aiosqlite, as a service whose worker thread never outlives it.

aiosqlite runs each connection in its own non-daemon thread; a connection that is never
closed keeps the process alive at exit (see docs/databases.md). So the connection is closed
in ``finally`` on every path: a failed or cancelled start, and the close stage. The close
is bounded: a statement still running is interrupted, and a thread that will not end is
reported, never waited on forever.

One connection serves the whole app: an anyio lock serialises its users, and a
``transaction()`` holds that lock for its whole block, so two tasks' transactions never
interleave. Transactions are explicit (``BEGIN IMMEDIATE``/``COMMIT``/``ROLLBACK``, the
driver in autocommit mode), nested ones are ``SAVEPOINT``s.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
import anyio

from lifecycle import ConfigError, Health, Stage
from lifecycle.adapters._sqlite_errors import reraise
from lifecycle.adapters._sqlite_thread import close_unclaimed, interrupt_statement, thread_of
from lifecycle.adapters.db import (
    CHECK_SHARE,
    Checkout,
    Checkouts,
    Database,
    DatabaseClosed,
    DatabaseUnavailable,
    QueryTimeout,
    Row,
    TaskLocal,
    positive_seconds,
    require_asyncio,
    translate_placeholders,
    wait_until,
)
from lifecycle.redact import describe_error

#: Share of ``close_timeout`` spent waiting for a running transaction before cutting it off.
GRACEFUL_SHARE = 0.5
_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


def _dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> Row:
    """Row factory run in the worker thread: rows come out as plain dicts."""
    return {d[0]: value for d, value in zip(cursor.description, row, strict=True)}


class SQLiteDatabase(Database):
    """A SQLite file (or ``:memory:``) as a service. See ``docs/databases.md``."""

    name = "sqlite"
    dialect = "sqlite"
    start_timeout = 10.0

    def __init__(
        self,
        path: str | os.PathLike[str] = "app.db",
        *,
        busy_timeout: float = 5.0,
        command_timeout: float = 30.0,
        acquire_timeout: float = 10.0,
        close_timeout: float = 3.0,
        check_timeout: float | None = None,
        journal_mode: str = "WAL",
        synchronous: str = "NORMAL",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.path = os.fspath(path)
        self.busy_timeout = positive_seconds(busy_timeout, "busy_timeout")
        self.command_timeout = positive_seconds(command_timeout, "command_timeout")
        self.acquire_timeout = positive_seconds(acquire_timeout, "acquire_timeout")
        self.close_timeout = positive_seconds(close_timeout, "close_timeout")
        if check_timeout is not None:
            self.check_timeout = positive_seconds(check_timeout, "check_timeout")
        if synchronous.upper() not in _SYNCHRONOUS:
            raise ConfigError(f"synchronous must be one of {_SYNCHRONOUS}, got {synchronous!r}")
        self.journal_mode = journal_mode.upper()
        self.synchronous = synchronous.upper()
        self.stop_stages = (Stage("close", self.close_timeout),)
        self._conn: aiosqlite.Connection | None = None
        self._lock = anyio.Lock()
        self._closing = False
        self._checkouts = Checkouts()
        self._tx: TaskLocal[_Tx] = TaskLocal(f"lifecycle_sqlite_tx_{id(self)}")
        self._details: dict[str, Any] = {}

    def __repr__(self) -> str:
        state = "open" if self._conn is not None else ("closed" if self._details else "new")
        return f"<SQLiteDatabase {self.name!r} {self.path!r} state={state}>"

    # -- start / check / close -------------------------------------------------------

    async def start(self) -> None:
        require_asyncio(f"SQLiteDatabase {self.name!r}", "aiosqlite")
        uri = self.path.startswith("file:")
        if not uri and self.path != ":memory:":
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseUnavailable(f"SQLite at {self.path!r}: {exc}") from exc
        opened: list[sqlite3.Connection] = []

        def connector() -> sqlite3.Connection:  # runs in the connection's worker thread
            raw = sqlite3.connect(self.path, isolation_level=None, timeout=self.busy_timeout,
                                  uri=uri, check_same_thread=False)
            opened.append(raw)
            return raw

        # aiosqlite.connect() builds the same Connection; built here so that a start cancelled
        # while the worker opens the file can still close what it opened (see close_unclaimed)
        conn = aiosqlite.Connection(connector, iter_chunk_size=64)
        try:
            with anyio.fail_after(float(self.start_timeout)):
                await conn
                conn.row_factory = _dict_row  # type: ignore[assignment]
                busy_ms = int(self.busy_timeout * 1000)
                await self._pragma(conn, f"PRAGMA busy_timeout = {busy_ms}")
                await self._pragma(conn, "PRAGMA foreign_keys = ON")
                mode = await self._pragma(conn, f"PRAGMA journal_mode = {self.journal_mode}")
                await self._pragma(conn, f"PRAGMA synchronous = {self.synchronous}")
        except BaseException as exc:
            ended = await self._dispose(conn, min(self.close_timeout, 2.0), interrupt=True)
            if ended:
                close_unclaimed(opened)
            if isinstance(exc, (sqlite3.Error, OSError)):
                raise DatabaseUnavailable(f"SQLite at {self.path!r}: "
                                          f"{describe_error(exc, ())}") from exc
            raise
        self._conn = conn
        self._closing = False
        self._details = {"path": self.path, "journal_mode": str(mode).lower()}
        self.log.info("opened %s (journal_mode=%s)", self.path, mode)

    @staticmethod
    async def _pragma(conn: aiosqlite.Connection, sql: str) -> Any:
        async with conn.execute(sql) as cursor:
            row: Any = await cursor.fetchone()  # a dict (see _dict_row)
        return None if row is None else next(iter(row.values()))

    async def check(self) -> Health:
        """``SELECT 1`` under ``check_timeout`` (waits behind a running transaction)."""
        try:
            with anyio.fail_after(self.check_timeout * CHECK_SHARE):
                await self.fetchval("SELECT 1", timeout=self.check_timeout * CHECK_SHARE)
        except (TimeoutError, QueryTimeout):
            limit = self.check_timeout * CHECK_SHARE
            return Health(False, reason=f"no answer to SELECT 1 within {limit:.2g} s")
        except Exception as exc:
            return Health(False, reason=describe_error(exc, ()))
        return Health(True)

    async def close(self) -> None:
        """Let a running transaction finish for ``close_timeout / 2``, then close; whatever
        happens, the worker thread is told to end and its end is awaited (bounded)."""
        conn = self._conn
        if conn is None or self._closing:
            return  # not started, already closed, or being closed by another caller
        self._closing = True  # new users are refused; a running transaction may finish
        held_at_start = [c.to_dict() for c in self._checkouts.snapshot()]
        still_held = held_at_start
        ended = False
        try:
            with anyio.move_on_after(self.close_timeout * GRACEFUL_SHARE):
                await self._lock.acquire()
                self._lock.release()
            still_held = [c.to_dict() for c in self._checkouts.snapshot()]
            if still_held:
                self.log.warning("closing %s while still in use: %s", self.path,
                                 "; ".join(c.describe() for c in self._checkouts.snapshot()))
        finally:  # also when this stage itself is cancelled: the thread must end
            self._conn = None
            remaining = self.close_timeout * (1 - GRACEFUL_SHARE) * 0.9
            ended = await self._dispose(conn, remaining, interrupt=bool(still_held))
            self._details.update({
                "close": "graceful" if not still_held and ended else "forced",
                "held_at_close": held_at_start,
                "cut_off": still_held,
                "thread_ended": ended,
            })

    async def stop(self) -> None:
        """Same as the ``close`` stage, for use without a supervisor."""
        await self.close()

    def report_details(self) -> dict[str, Any]:
        return dict(self._details)

    async def _dispose(self, conn: aiosqlite.Connection, timeout: float, *,
                       interrupt: bool) -> bool:
        """Close ``conn`` and end its thread within ``timeout``, even if cancelled; True
        when the thread ended. With ``interrupt``, a statement still running is cut short."""
        thread = thread_of(conn)
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(timeout * 0.6):
                try:
                    if interrupt:
                        await interrupt_statement(conn)
                    await conn.close()
                except Exception as exc:
                    self.log.warning("close of %s failed: %s", self.path,
                                     describe_error(exc, ()))
            if thread is not None and thread.is_alive():
                stop = getattr(conn, "stop", None)  # one more "stop" for the worker: harmless
                if stop is not None:
                    stop()
                await wait_until(lambda: not thread.is_alive(), timeout * 0.4)
        ended = thread is None or not thread.is_alive()
        if not ended:
            self.log.warning("the SQLite thread %r for %s did not end within %.2f s",
                             thread.name if thread else "?", self.path, timeout)
        return ended

    # -- serialisation ---------------------------------------------------------------

    @asynccontextmanager
    async def _exclusive(self, op: str, sql: str = "") -> AsyncIterator[aiosqlite.Connection]:
        """The connection for one operation of this task: inside this task's transaction,
        at once; otherwise once the lock is ours."""
        tx = self._tx.get()
        if tx is None:
            async with self._locked(op, sql) as (locked, _):
                yield locked
            return
        conn = self._conn
        if conn is None:
            raise DatabaseClosed(f"{self.name}: the database was closed")
        tx.checkout.sql = sql or tx.checkout.sql
        yield conn

    @asynccontextmanager
    async def _locked(self, op: str, sql: str) -> AsyncIterator[tuple[aiosqlite.Connection,
                                                                      Checkout]]:
        """The connection with the lock held (waiting at most ``acquire_timeout``)."""
        if self._conn is None or self._closing:
            state = "closing" if self._closing else "not started"
            raise DatabaseClosed(f"{self.name}: the database is {state}")
        try:
            with anyio.fail_after(self.acquire_timeout):
                await self._lock.acquire()
        except TimeoutError:
            raise QueryTimeout(f"{self.name}: waited {self.acquire_timeout:g} s for the "
                               f"connection (held by another task's transaction)") from None
        try:
            conn = self._conn
            if self._closing or conn is None:
                raise DatabaseClosed(f"{self.name}: the database is closing")
            with self._checkouts.hold(op, sql) as checkout:
                yield conn, checkout
        finally:
            self._lock.release()

    async def _call(self, conn: aiosqlite.Connection, op: str, deadline: float,
                    sql: str, params: Any = (), many: bool = False, fetch: int = 0) -> Any:
        """Run one statement under ``deadline``; ``fetch``: 0 rowcount, 1 one row, 2 all.

        On timeout or cancellation the statement is interrupted: it would otherwise keep the
        worker thread busy, and everything queued behind it (a rollback, the close) waiting.
        """
        try:
            with anyio.fail_after(deadline):
                if many:
                    cursor = await conn.executemany(sql, params)
                else:
                    cursor = await conn.execute(sql, params)
                try:
                    if fetch == 1:
                        return await cursor.fetchone()
                    if fetch == 2:
                        return await cursor.fetchall()
                    return max(cursor.rowcount, 0)
                finally:
                    await cursor.close()
        except TimeoutError:
            await interrupt_statement(conn)
            raise QueryTimeout(f"{self.name}: {op} did not finish within {deadline:g} s"
                               ) from None
        except Exception as exc:
            reraise(exc, f"{self.name}: {op}")
        except BaseException:  # cancelled
            await interrupt_statement(conn)
            raise

    # -- the portable interface ------------------------------------------------------

    async def execute(self, sql: str, *args: Any, timeout: float | None = None) -> int:
        deadline = self.command_timeout if timeout is None else timeout
        async with self._exclusive("execute", sql) as conn:
            result: int = await self._call(conn, "execute", deadline,
                                           translate_placeholders(sql), args)
            return result

    async def executemany(
        self, sql: str, args_seq: Iterable[Sequence[Any]], *, timeout: float | None = None
    ) -> None:
        deadline = self.command_timeout if timeout is None else timeout
        rows = [tuple(args) for args in args_seq]
        # In a transaction: atomic like asyncpg's, and far faster than one commit per row.
        async with self.transaction(), self._exclusive("executemany", sql) as conn:
            await self._call(conn, "executemany", deadline, translate_placeholders(sql),
                             rows, many=True)

    async def fetch(self, sql: str, *args: Any, timeout: float | None = None) -> list[Row]:
        deadline = self.command_timeout if timeout is None else timeout
        async with self._exclusive("fetch", sql) as conn:
            rows = await self._call(conn, "fetch", deadline, translate_placeholders(sql),
                                    args, fetch=2)
        return list(rows)

    async def fetchrow(self, sql: str, *args: Any, timeout: float | None = None) -> Row | None:
        deadline = self.command_timeout if timeout is None else timeout
        async with self._exclusive("fetchrow", sql) as conn:
            row: Row | None = await self._call(conn, "fetchrow", deadline,
                                               translate_placeholders(sql), args, fetch=1)
            return row

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SQLiteDatabase]:
        tx = self._tx.get()
        if tx is not None:  # nested in this task's transaction: a savepoint
            conn = self._conn
            if conn is None:
                raise DatabaseClosed(f"{self.name}: the database was closed")
            with self._tx.bind(_Tx(tx.checkout, tx.depth + 1)):
                async with self._statements(conn, tx.depth):
                    yield self
            return
        async with self._locked("transaction", "") as (conn, checkout):
            with self._tx.bind(_Tx(checkout, 1)):
                async with self._statements(conn, 0):
                    yield self

    @asynccontextmanager
    async def _statements(self, conn: aiosqlite.Connection, depth: int) -> AsyncIterator[None]:
        """BEGIN (or SAVEPOINT) before the block, COMMIT (RELEASE) after it, ROLLBACK when
        it raises or the commit fails."""
        begin, commit, rollback = _statements(depth)
        await self._call(conn, "begin", self.command_timeout, begin)
        try:
            yield
        except BaseException:
            await self._rollback(conn, rollback)
            raise
        try:
            await self._call(conn, "commit", self.command_timeout, commit)
        except BaseException:
            await self._rollback(conn, rollback)
            raise

    async def _rollback(self, conn: aiosqlite.Connection, statements: tuple[str, ...]) -> None:
        """Undo the transaction or savepoint, even when cancelled; bounded."""
        with anyio.move_on_after(self.command_timeout, shield=True):
            try:
                for sql in statements:
                    await self._call(conn, "rollback", self.command_timeout, sql)
            except Exception as exc:
                if self._conn is not None:  # after a close the database rolled it back
                    self.log.warning("rollback on %s failed: %s", self.path,
                                     describe_error(exc, ()))


@dataclass(frozen=True)
class _Tx:
    """This task's open transaction: who holds the lock, and how deep the nesting is."""

    checkout: Checkout
    depth: int


def _statements(depth: int) -> tuple[str, str, tuple[str, ...]]:
    """BEGIN, COMMIT and ROLLBACK for a transaction at nesting ``depth`` (0: outermost)."""
    if depth == 0:
        return "BEGIN IMMEDIATE", "COMMIT", ("ROLLBACK",)
    sp = f"lifecycle_sp_{depth}"
    return f"SAVEPOINT {sp}", f"RELEASE {sp}", (f"ROLLBACK TO {sp}", f"RELEASE {sp}")
