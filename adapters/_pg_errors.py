"""asyncpg's exceptions as the portable :mod:`lifecycle.adapters.db` hierarchy.

App code catches ``IntegrityError`` or ``ConnectionLost`` whichever database won the
start; the asyncpg exception stays reachable as ``__cause__``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from contextlib import suppress
from typing import NoReturn

import asyncpg  # type: ignore[import-untyped]
from asyncpg import exceptions as pg

from lifecycle.adapters.db import (
    ConnectionLost,
    DatabaseError,
    DatabaseUnavailable,
    IntegrityError,
    QueryError,
    QueryTimeout,
    raise_as,
)
from lifecycle.redact import describe_error

#: asyncpg raises asyncio's TimeoutError, anyio the builtin one (distinct before 3.11).
TIMEOUTS = (TimeoutError, asyncio.TimeoutError)

_INTEGRITY = (
    (pg.UniqueViolationError, "unique"),
    (pg.NotNullViolationError, "not_null"),
    (pg.ForeignKeyViolationError, "foreign_key"),
    (pg.CheckViolationError, "check"),
)
#: The server went away under the connection (SQLSTATE 57P01..57P03, 08xxx) or the socket.
_LOST = (pg.ConnectionDoesNotExistError, pg.PostgresConnectionError, pg.AdminShutdownError,
         pg.CrashShutdownError, ConnectionError, OSError)


def translate(exc: BaseException, where: str, secrets: Iterable[str]) -> DatabaseError | None:
    """The portable error for ``exc`` raised by ``where`` (``"db: execute"``), or None when
    ``exc`` is not a driver error (the app's own exception, a cancellation)."""
    if isinstance(exc, DatabaseError):
        return exc
    text = f"{where}: {describe_error(exc, secrets)}"
    if isinstance(exc, pg.IntegrityConstraintViolationError):
        kind = next((k for cls, k in _INTEGRITY if isinstance(exc, cls)), "other")
        return IntegrityError(text, kind)
    if isinstance(exc, (pg.QueryCanceledError, *TIMEOUTS)):
        return QueryTimeout(text)
    if isinstance(exc, pg.CannotConnectNowError):
        return DatabaseUnavailable(text)
    if isinstance(exc, _LOST):
        return ConnectionLost(text)
    if isinstance(exc, pg.InterfaceError) and "closed" in str(exc):
        return ConnectionLost(text)  # "connection is closed": cut while we used it
    if isinstance(exc, (pg.PostgresError, pg.InterfaceError, asyncpg.DataError)):
        return QueryError(text)
    return None


def reraise(exc: Exception, where: str, secrets: Iterable[str]) -> NoReturn:
    """Raise the portable error for ``exc`` from it; ``exc`` itself when it has none."""
    raise_as(translate(exc, where, secrets), exc, secrets)


def terminate_conn(conn: asyncpg.Connection) -> None:
    """Abort ``conn``; nothing to do when the pool already cut it (the proxy is detached)."""
    with suppress(asyncpg.InterfaceError):
        conn.terminate()


def terminate_pool(pool: asyncpg.Pool) -> None:
    """Terminate ``pool`` whatever state its init left it in (asyncpg raises on some)."""
    try:
        pool.terminate()
    except Exception:  # "pool is not initialized": nothing was connected
        for holder in getattr(pool, "_holders", ()):
            holder.terminate()
