"""PostgreSQL through an asyncpg pool, where every await has a deadline (incident 4 in docs/architecture.md).

- The pool is created under a deadline that also covers a dead proxy (TCP accepted, never
  answered) and a stalled server; a pool whose creation failed or was cancelled is
  terminated, never leaked.
- Every operation has one: ``acquire_timeout``, ``command_timeout``, a bounded release.
- The close is a stage with a deadline: ``pool.close()`` gets most of it, then connections
  still checked out are terminated and named in the log and the report.
- The DSN's password never shows up in logs, reports, ``repr()`` or exception text, in
  whatever form it came (URL, libpq keywords, ``connect_kwargs``, ``PGPASSWORD``, passfile).
- Driver errors are raised as the portable hierarchy of :mod:`lifecycle.adapters.db`.
- ``connect=`` plugs in another connection factory (the Cloud SQL Python Connector).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import asyncpg  # type: ignore[import-untyped]

from lifecycle import ConfigError, Health, Stage, redact
from lifecycle.adapters import _pg_dsn
from lifecycle.adapters._pg_errors import TIMEOUTS as _TIMEOUTS
from lifecycle.adapters._pg_errors import terminate_pool as _terminate_quietly
from lifecycle.adapters._pg_ops import PooledOperations
from lifecycle.adapters.db import (
    CHECK_SHARE,
    Checkout,
    Checkouts,
    DatabaseUnavailable,
    TaskLocal,
    positive_seconds,
    require_asyncio,
)

#: An async connection factory: ``await connect()`` returns an ``asyncpg.Connection``.
ConnectFactory = Callable[[], Awaitable[asyncpg.Connection]]

#: Share of ``close_timeout`` given to a graceful ``pool.close()`` before terminating.
GRACEFUL_SHARE = 0.75
#: Share of ``start_timeout`` the pool creation may use, so that our clearer error (with the
#: masked DSN) is what the report shows rather than a bare cancellation.
START_SHARE = 0.9


class PostgresDatabase(PooledOperations):
    """A PostgreSQL pool as a service. ``Fallback`` candidates: see ``docs/databases.md``."""

    name = "postgres"
    dialect = "postgresql"
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
        connect: ConnectFactory | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._parsed = _pg_dsn.parse(dsn, connect_kwargs)
        self._connect = connect
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
        self._waiting = 0
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

    @classmethod
    def cloud_sql(cls, instance: str, **kwargs: Any) -> PostgresDatabase:
        """A pool on a Cloud SQL instance through the Cloud SQL Python Connector (the
        ``cloudsql`` extra); see :class:`~lifecycle.adapters.cloudsql.CloudSQLDatabase`."""
        from lifecycle.adapters.cloudsql import CloudSQLDatabase

        return CloudSQLDatabase(instance, **kwargs)

    # -- secrets ---------------------------------------------------------------------

    @property
    def dsn(self) -> str:
        """The DSN with every password masked (safe to log)."""
        return self._parsed.masked

    def secrets(self) -> list[str]:
        """Every spelling of every password asyncpg may use: the DSN's (URL or keyword
        form), ``connect_kwargs``, ``PGPASSWORD``, the passfile and the service file."""
        return sorted({form for secret in self._parsed.secrets
                       for form in redact.secret_forms(secret)}, key=len, reverse=True)

    def pool_stats(self) -> dict[str, int]:
        """Connections open, idle, checked out by this adapter, and tasks waiting for one
        (all 0 before the start and after the close); cheap, for metrics."""
        pool = self._pool
        size, idle = (pool.get_size(), pool.get_idle_size()) if pool is not None else (0, 0)
        return {"size": size, "idle": idle, "in_use": len(self._checkouts),
                "waiting": self._waiting, "max_size": self.max_size}

    def __repr__(self) -> str:
        return f"<PostgresDatabase {self.name!r} {self.dsn} state={self._state_text()}>"

    # -- start / check / close -------------------------------------------------------

    async def start(self) -> None:
        require_asyncio(f"PostgresDatabase {self.name!r}", "asyncpg")
        if self._parsed.url is None and self._connect is None:
            raise DatabaseUnavailable(self._missing_reason)
        budget = float(self.start_timeout) * START_SHARE
        connect_timeout = min(self.connect_timeout, budget)
        pool = asyncpg.create_pool(
            self._parsed.url,
            min_size=self.min_size,
            max_size=self.max_size,
            timeout=connect_timeout,
            command_timeout=self.command_timeout,
            max_inactive_connection_lifetime=self.max_inactive_connection_lifetime,
            connect=None if self._connect is None else self._bounded_connect,
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

    async def _bounded_connect(self, *_args: Any, **_kwargs: Any) -> asyncpg.Connection:
        """The ``connect=`` factory under ``connect_timeout`` (asyncpg's own arguments are
        for its default connect, not for a factory that knows its target)."""
        assert self._connect is not None
        with anyio.fail_after(self.connect_timeout):
            return await self._connect()

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
