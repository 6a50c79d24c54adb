"""PostgreSQL through an asyncpg pool, where every await has a deadline (incident 4).

- The pool is created under a deadline that also covers a dead proxy (TCP accepted, never
  answered) and a stalled server; a pool whose creation failed or was cancelled is
  terminated, never leaked.
- Every operation has one: ``acquire_timeout``, ``command_timeout``, a bounded release.
- The close is a stage with a deadline: ``pool.close()`` gets most of it, then connections
  still checked out are terminated and named in the log and the report.
- The DSN's password never shows up in logs, reports, ``repr()`` or exception text.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio
import asyncpg  # type: ignore[import-untyped]

from lifecycle import ConfigError, Health, Stage, redact
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
    rows_affected,
)

#: Share of ``close_timeout`` given to a graceful ``pool.close()`` before terminating.
GRACEFUL_SHARE = 0.75
#: Share of ``start_timeout`` the pool creation may use, so that our clearer error (with the
#: masked DSN) is what the report shows rather than a bare cancellation.
START_SHARE = 0.9
#: asyncpg raises asyncio's TimeoutError, anyio the builtin one (distinct before 3.11).
_TIMEOUTS = (TimeoutError, asyncio.TimeoutError)


class PostgresDatabase(Database):
    """A PostgreSQL pool as a service. ``Fallback`` candidates: see ``docs/databases.md``."""

    name = "postgres"
    start_timeout = 10.0

    def __init__(
        self,
        dsn: str | None,
        *,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 5.0,
        command_timeout: float = 30.0,
        acquire_timeout: float = 10.0,
        release_timeout: float = 2.0,
        close_timeout: float = 3.0,
        check_timeout: float | None = None,
        max_inactive_connection_lifetime: float = 300.0,
        connect_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._dsn = dsn or None
        self._missing_reason = "no DSN given"
        if not 0 <= min_size <= max_size or max_size < 1:
            raise ConfigError(f"pool sizes need 0 <= min_size <= max_size >= 1, "
                              f"got min_size={min_size}, max_size={max_size}")
        self.min_size = min_size
        self.max_size = max_size
        self.connect_timeout = positive_seconds(connect_timeout, "connect_timeout")
        self.command_timeout = positive_seconds(command_timeout, "command_timeout")
        self.acquire_timeout = positive_seconds(acquire_timeout, "acquire_timeout")
        self.release_timeout = positive_seconds(release_timeout, "release_timeout")
        self.close_timeout = positive_seconds(close_timeout, "close_timeout")
        if check_timeout is not None:
            self.check_timeout = positive_seconds(check_timeout, "check_timeout")
        self.max_inactive_connection_lifetime = max_inactive_connection_lifetime
        self.stop_stages = (Stage("close", self.close_timeout),)
        self._connect_kwargs = dict(connect_kwargs or {})
        self._pool: asyncpg.Pool | None = None
        self._closing = False
        self._checkouts = Checkouts()
        self._bound: TaskLocal[tuple[asyncpg.Connection, Checkout]] = TaskLocal(
            f"lifecycle_pg_tx_{id(self)}")
        self._close_details: dict[str, Any] = {}

    @classmethod
    def from_env(
        cls, *, name: str | None = None, var: str = "DATABASE_URL",
        environ: Mapping[str, str] | None = None, **kwargs: Any,
    ) -> PostgresDatabase:
        """Read the DSN from ``$DATABASE_URL``. Unset, the object is still built, and its
        start fails at once with "DATABASE_URL is not set" (a Fallback moves on)."""
        env = os.environ if environ is None else environ
        if name is not None:
            kwargs["name"] = name
        db = cls(env.get(var) or None, **kwargs)
        db._missing_reason = f"{var} is not set"
        return db

    # -- secrets ---------------------------------------------------------------------

    @property
    def dsn(self) -> str:
        """The DSN with its password masked (safe to log)."""
        return redact.mask_url(self._dsn) if self._dsn else "<unset>"

    def secrets(self) -> list[str]:
        """Every spelling of the password (DSN, ``password=`` kwarg, ``PGPASSWORD``)."""
        raw: list[str] = []
        if self._dsn:
            raw += [p for p in [redact.url_password(self._dsn)] if p]
            raw += redact.url_secret_params(self._dsn)
        if isinstance(self._connect_kwargs.get("password"), str):
            raw.append(self._connect_kwargs["password"])
        if os.environ.get("PGPASSWORD") and not raw:
            raw.append(os.environ["PGPASSWORD"])
        return sorted({form for secret in raw for form in redact.secret_forms(secret)})

    def __repr__(self) -> str:
        return f"<PostgresDatabase {self.name!r} {self.dsn} state={self._state_text()}>"

    def _state_text(self) -> str:
        if self._pool is None:
            return "closed" if self._close_details else "new"
        return "closing" if self._closing else "open"

    # -- start / check / close -------------------------------------------------------

    async def start(self) -> None:
        if self._dsn is None:
            raise DatabaseUnavailable(self._missing_reason)
        budget = float(self.start_timeout) * START_SHARE
        connect_timeout = min(self.connect_timeout, budget)
        pool = asyncpg.create_pool(
            self._dsn,
            min_size=self.min_size,
            max_size=self.max_size,
            timeout=connect_timeout,
            command_timeout=self.command_timeout,
            max_inactive_connection_lifetime=self.max_inactive_connection_lifetime,
            **self._connect_kwargs,
        )
        started = anyio.current_time()
        try:
            with anyio.fail_after(budget):
                await pool
                if self.min_size == 0:  # nothing connected yet: prove the server answers
                    async with pool.acquire(timeout=budget) as conn:
                        await conn.fetchval("SELECT 1", timeout=budget)
        except BaseException as exc:
            _terminate_quietly(pool)
            if not isinstance(exc, Exception):
                raise  # cancelled from outside: the pool is gone, let it propagate
            elapsed = anyio.current_time() - started
            raise self._unavailable(exc, elapsed) from redact.safe_cause(exc, self.secrets())
        self._pool = pool
        self._closing = False
        self.log.info("connected to %s (pool %d..%d)", self.dsn, self.min_size, self.max_size)

    def _unavailable(self, exc: Exception, elapsed: float) -> DatabaseUnavailable:
        if isinstance(exc, _TIMEOUTS):
            why = (f"no answer after {elapsed:.2f} s (connect_timeout {self.connect_timeout:g} s,"
                   f" start_timeout {float(self.start_timeout):g} s)")
        else:
            why = f"{redact.describe_error(exc, self.secrets())} after {elapsed:.2f} s"
        return DatabaseUnavailable(f"PostgreSQL at {self.dsn}: {why}")

    async def check(self) -> Health:
        """``SELECT 1`` on a pooled connection, under ``check_timeout``."""
        try:
            with anyio.fail_after(self.check_timeout * CHECK_SHARE):
                await self.fetchval("SELECT 1", timeout=self.check_timeout * CHECK_SHARE)
        except _TIMEOUTS:
            limit = self.check_timeout * CHECK_SHARE
            return Health(False, reason=f"no answer to SELECT 1 within {limit:.2g} s")
        except Exception as exc:
            return Health(False, reason=redact.describe_error(exc, self.secrets()))
        pool = self._pool
        detail = {"size": pool.get_size(), "idle": pool.get_idle_size()} if pool else {}
        return Health(True, detail=detail)

    async def close(self) -> None:
        """Close the pool: gracefully for ``close_timeout * 0.75``, then terminate what is
        still checked out, naming who held it."""
        pool, self._pool = self._pool, None
        if pool is None:
            return  # not started, or already closed (or closing, by another caller)
        self._closing = True
        secrets = self.secrets()
        held_at_start = [c.to_dict(secrets) for c in self._checkouts.snapshot()]
        outcome, error = "terminated", None
        try:
            with anyio.move_on_after(self.close_timeout * GRACEFUL_SHARE) as scope:
                await pool.close()
            if not scope.cancelled_caught:
                outcome = "graceful"
        except Exception as exc:  # pool.close() terminates the pool itself on errors
            outcome, error = "error", redact.describe_error(exc, secrets)
        finally:  # also when this stage itself is cancelled: never leave the pool open
            still_held = self._checkouts.snapshot()
            _terminate_quietly(pool)
            self._close_details = {
                "close": outcome,
                "held_at_close": held_at_start,
                "terminated": [c.to_dict(secrets) for c in still_held],
                **({"error": error} if error else {}),
            }
        if still_held:
            self.log.warning("closed %s: terminated %d connection(s) still held: %s", self.dsn,
                             len(still_held), "; ".join(c.describe(secrets) for c in still_held))
        elif outcome == "terminated":
            self.log.warning("closed %s: graceful close took over %.2f s, terminated",
                             self.dsn, self.close_timeout * GRACEFUL_SHARE)

    async def stop(self) -> None:
        await self.close()  # the ``close`` stage, for use without a supervisor

    def report_details(self) -> dict[str, Any]:
        return {"dsn": self.dsn, **self._close_details}

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
        try:
            with anyio.fail_after(wait):
                conn = await pool.acquire(timeout=wait)
        except _TIMEOUTS:
            raise QueryTimeout(
                f"{self.name}: no free connection within {wait:g} s "
                f"({len(self._checkouts)} of {self.max_size} checked out)"
            ) from None
        suspect = True
        try:
            with self._checkouts.hold(op, sql) as checkout:
                yield conn, checkout
            suspect = False
        except Exception as exc:
            suspect = isinstance(exc, _TIMEOUTS)
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
            _terminate_conn(conn)
            return
        with anyio.move_on_after(self.release_timeout, shield=True):
            try:
                await pool.release(conn, timeout=self.release_timeout)
                return
            except Exception as exc:
                self.log.warning("release failed, terminating the connection: %s",
                                 redact.describe_error(exc, self.secrets()))
        _terminate_conn(conn)

    @asynccontextmanager
    async def _run(self, op: str, sql: str, timeout: float | None) -> AsyncIterator[
            tuple[asyncpg.Connection, float]]:
        """A connection and the command deadline for one operation; timeouts -> QueryTimeout."""
        deadline = self.command_timeout if timeout is None else timeout
        async with self._checkout(op, sql) as (conn, _):
            try:
                yield conn, deadline
            except _TIMEOUTS:
                raise QueryTimeout(f"{self.name}: {op} did not finish within {deadline:g} s"
                                   ) from None

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
    async def transaction(self) -> AsyncIterator[PostgresDatabase]:
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
                _terminate_conn(conn)
            raise
        await self._tx_step(conn, tx.commit, "commit")

    async def _tx_step(self, conn: asyncpg.Connection, step: Callable[[], Awaitable[Any]],
                       what: str) -> None:
        """BEGIN or COMMIT under ``command_timeout``; on overrun the connection is in an
        unknown state, so it is terminated rather than returned to the pool."""
        try:
            with anyio.fail_after(self.command_timeout):
                await step()
        except _TIMEOUTS:
            _terminate_conn(conn)
            raise QueryTimeout(f"{self.name}: {what} did not finish within "
                               f"{self.command_timeout:g} s") from None

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


def _terminate_conn(conn: asyncpg.Connection) -> None:
    """Abort ``conn``; nothing to do when the pool already cut it (the proxy is detached)."""
    with suppress(asyncpg.InterfaceError):
        conn.terminate()


def _terminate_quietly(pool: asyncpg.Pool) -> None:
    """Terminate ``pool`` whatever state its init left it in (asyncpg raises on some)."""
    try:
        pool.terminate()
    except Exception:  # "pool is not initialized": nothing was connected
        for holder in getattr(pool, "_holders", ()):
            holder.terminate()
