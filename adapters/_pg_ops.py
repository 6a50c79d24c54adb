"""The portable query interface on an asyncpg pool: checkouts, deadlines, transactions.

:class:`~lifecycle.adapters.postgres.PostgresDatabase` owns the pool (start, check,
close); this base class is how each operation uses it. Every await has a deadline; a
connection whose operation timed out or was cancelled is terminated, not reused; driver
errors are raised as the portable hierarchy of :mod:`lifecycle.adapters.db`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import asyncpg  # type: ignore[import-untyped]

from lifecycle import redact
from lifecycle.adapters._pg_errors import TIMEOUTS, reraise, terminate_conn, translate
from lifecycle.adapters.db import (
    Checkout,
    Checkouts,
    Database,
    DatabaseClosed,
    DatabaseUnavailable,
    QueryTimeout,
    Row,
    TaskLocal,
    raise_as,
    rows_affected,
)


class PooledOperations(Database):
    """What every operation does with the pool; the subclass opens and closes it."""

    max_size: int
    acquire_timeout: float
    command_timeout: float
    release_timeout: float
    _pool: asyncpg.Pool | None
    _closing: bool
    _checkouts: Checkouts
    _bound: TaskLocal[tuple[asyncpg.Connection, Checkout]]
    _waiting: int

    def _state_text(self) -> str:
        if self._pool is None:
            return "closed" if getattr(self, "_close_details", None) else "new"
        return "closing" if self._closing else "open"

    # -- connections -----------------------------------------------------------------

    @asynccontextmanager
    async def acquire(
        self, *, timeout: float | None = None
    ) -> AsyncIterator[asyncpg.Connection]:
        """A pooled asyncpg connection for the block (PostgreSQL only, not portable).

        Waits at most ``timeout`` (default ``acquire_timeout``) for a free connection; the
        release is bounded too. Inside a ``transaction()`` block it yields that transaction's
        connection.
        """
        async with self._checkout("acquire", "", timeout) as (conn, _):
            yield conn

    @asynccontextmanager
    async def _checkout(
        self, op: str, sql: str, timeout: float | None = None
    ) -> AsyncIterator[tuple[asyncpg.Connection, Checkout]]:
        """A connection and the record of who holds it (this task's transaction's, if any)."""
        bound = self._bound.get()
        if bound is not None:
            bound[1].sql = sql or bound[1].sql
            yield bound
            return
        pool = self._pool
        if pool is None or self._closing:
            raise DatabaseClosed(f"{self.name}: the pool is {self._state_text()}")
        wait = self.acquire_timeout if timeout is None else timeout
        self._waiting += 1
        try:
            with anyio.fail_after(wait):
                conn = await pool.acquire(timeout=wait)
        except TIMEOUTS:
            raise QueryTimeout(
                f"{self.name}: no free connection within {wait:g} s "
                f"({len(self._checkouts)} of {self.max_size} checked out)"
            ) from None
        except Exception as exc:  # a new connection was needed and could not be opened
            error = translate(exc, f"{self.name}: {op}", self.secrets())
            if error is None:
                raise
            if not isinstance(error, QueryTimeout):
                error = DatabaseUnavailable(str(error))
            raise_as(error, exc, self.secrets())
        finally:
            self._waiting -= 1
        suspect = True
        try:
            with self._checkouts.hold(op, sql) as checkout:
                yield conn, checkout
            suspect = False
        except Exception as exc:
            suspect = isinstance(exc, TIMEOUTS)
            raise
        finally:
            await self._release(pool, conn, suspect)

    async def _release(self, pool: asyncpg.Pool, conn: asyncpg.Connection,
                       suspect: bool) -> None:
        """Give ``conn`` back within ``release_timeout``, or terminate it.

        A connection whose operation timed out or was cancelled is ``suspect``: the server
        may be stalled, and asyncpg's release would wait for the cancelled query. It is
        terminated at once; the pool opens a fresh one when needed.
        """
        if suspect or pool.is_closing():  # (closing: the close stage cuts it anyway)
            terminate_conn(conn)
            return
        with anyio.move_on_after(self.release_timeout, shield=True):
            try:
                await pool.release(conn, timeout=self.release_timeout)
                return
            except Exception as exc:
                self.log.warning("release failed, terminating the connection: %s",
                                 redact.describe_error(exc, self.secrets()))
        terminate_conn(conn)

    @asynccontextmanager
    async def _run(self, op: str, sql: str, timeout: float | None) -> AsyncIterator[
            tuple[asyncpg.Connection, float]]:
        """A connection and the command deadline for one operation; timeouts -> QueryTimeout."""
        deadline = self.command_timeout if timeout is None else timeout
        async with self._checkout(op, sql) as (conn, _):
            try:
                yield conn, deadline
            except TIMEOUTS:
                raise QueryTimeout(f"{self.name}: {op} did not finish within {deadline:g} s"
                                   ) from None
            except Exception as exc:
                reraise(exc, f"{self.name}: {op}", self.secrets())

    # -- the portable interface ------------------------------------------------------

    async def execute(self, sql: str, *args: Any, timeout: float | None = None) -> int:
        async with self._run("execute", sql, timeout) as (conn, deadline):
            status = await conn.execute(sql, *args, timeout=deadline)
        return rows_affected(status)

    async def executemany(
        self, sql: str, args_seq: Iterable[Sequence[Any]], *, timeout: float | None = None
    ) -> None:
        async with self._run("executemany", sql, timeout) as (conn, deadline):
            await conn.executemany(sql, list(args_seq), timeout=deadline)

    async def fetch(self, sql: str, *args: Any, timeout: float | None = None) -> list[Row]:
        async with self._run("fetch", sql, timeout) as (conn, deadline):
            records = await conn.fetch(sql, *args, timeout=deadline)
        return [dict(r.items()) for r in records]

    async def fetchrow(self, sql: str, *args: Any, timeout: float | None = None) -> Row | None:
        async with self._run("fetchrow", sql, timeout) as (conn, deadline):
            record = await conn.fetchrow(sql, *args, timeout=deadline)
        return None if record is None else dict(record.items())

    async def fetchval(
        self, sql: str, *args: Any, column: int = 0, timeout: float | None = None
    ) -> Any:
        async with self._run("fetchval", sql, timeout) as (conn, deadline):
            return await conn.fetchval(sql, *args, column=column, timeout=deadline)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PooledOperations]:
        bound = self._bound.get()
        if bound is not None:  # nested: asyncpg turns it into a savepoint
            async with self._transaction_on(bound[0]):
                yield self
            return
        async with self._checkout("transaction", "") as (conn, checkout):
            with self._bound.bind((conn, checkout)):
                async with self._transaction_on(conn):
                    yield self

    @asynccontextmanager
    async def _transaction_on(self, conn: asyncpg.Connection) -> AsyncIterator[None]:
        tx = conn.transaction()
        await self._tx_step(conn, tx.start, "BEGIN")
        try:
            yield
        except BaseException:
            # Roll back even when cancelled; a rollback that cannot finish leaves the
            # connection in an unknown state, so it is terminated instead of reused.
            if not await self._rollback(tx):
                terminate_conn(conn)
            raise
        await self._tx_step(conn, tx.commit, "commit")

    async def _tx_step(self, conn: asyncpg.Connection, step: Callable[[], Awaitable[Any]],
                       what: str) -> None:
        """BEGIN or COMMIT under ``command_timeout``; on overrun the connection is in an
        unknown state, so it is terminated rather than returned to the pool."""
        try:
            with anyio.fail_after(self.command_timeout):
                await step()
        except TIMEOUTS:
            terminate_conn(conn)
            raise QueryTimeout(f"{self.name}: {what} did not finish within "
                               f"{self.command_timeout:g} s") from None
        except Exception as exc:
            reraise(exc, f"{self.name}: {what}", self.secrets())

    async def _rollback(self, tx: Any) -> bool:
        """Roll ``tx`` back, shielded from cancellation and bounded; True when it worked."""
        with anyio.move_on_after(self.command_timeout, shield=True):
            try:
                await tx.rollback()
            except Exception as exc:
                self.log.warning("rollback failed: %s", redact.describe_error(exc, self.secrets()))
                return False
            return True
        return False

