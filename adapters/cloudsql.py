"""Cloud SQL for PostgreSQL through Google's Cloud SQL Python Connector (the ``cloudsql`` extra).

The connector is what Google recommends from Python instead of the Cloud SQL Auth Proxy:
it fetches short-lived certificates from the SQL Admin API and refreshes them in
background tasks. Those tasks and its HTTP session are resources that must be closed, so
:class:`CloudSQLDatabase` owns the connector: it is created in ``start()`` (on the running
event loop, no thread of its own), used as the pool's connection factory, and closed in
the ``close`` stage under a deadline, also when the start fails or is cancelled. Every
start is bounded by ``start_timeout`` like any ``PostgresDatabase``, so a Cloud SQL that
cannot be reached (no network, API down, instance stopped) makes a ``Fallback`` move on.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

import anyio
import asyncpg  # type: ignore[import-untyped]

from lifecycle import ConfigError, Stage
from lifecycle.adapters.db import DatabaseUnavailable, positive_seconds, require_asyncio
from lifecycle.adapters.postgres import PostgresDatabase
from lifecycle.redact import describe_error, secret_forms

#: Deadline of the connector's own close (its refresh tasks, its HTTP session).
CONNECTOR_CLOSE_TIMEOUT = 1.0


class CloudSQLDatabase(PostgresDatabase):
    """A PostgreSQL pool on a Cloud SQL instance (``"project:region:instance"``).

    ``iam=True`` signs in with the IAM identity of the credentials (no password);
    otherwise ``password`` is the database user's. ``credentials`` default to Application
    Default Credentials, resolved in a worker thread at start (they may ask the metadata
    server). Pool options are :class:`~lifecycle.adapters.postgres.PostgresDatabase`'s.
    """

    name = "cloudsql"

    def __init__(self, instance: str, *, user: str, db: str, password: str | None = None,
                 iam: bool = False, ip_type: str = "public", credentials: Any = None,
                 refresh_strategy: str = "background", api_endpoint: str | None = None,
                 connector_close_timeout: float = CONNECTOR_CLOSE_TIMEOUT,
                 **kwargs: Any) -> None:
        if not isinstance(instance, str) or instance.count(":") != 2:
            raise ConfigError(f"Cloud SQL instance must read 'project:region:instance', "
                              f"got {instance!r}")
        if iam and password:
            raise ConfigError(f"Cloud SQL {instance!r}: iam=True signs in without a password")
        super().__init__(None, connect=self._connect_through_connector, **kwargs)
        self.instance, self.user, self.db, self.iam = instance, user, db, iam
        self._password = password
        self._options: dict[str, Any] = {"ip_type": ip_type, "refresh_strategy": refresh_strategy,
                         "sqladmin_api_endpoint": api_endpoint}
        self._credentials = credentials
        self.connector_close_timeout = positive_seconds(connector_close_timeout,
                                                        "connector_close_timeout")
        self.stop_stages = (Stage("close", self.close_timeout + self.connector_close_timeout),)
        self._connector: Any = None

    @classmethod
    def from_env(cls, *, name: str | None = None, var: str = "CLOUD_SQL_INSTANCE",
                 environ: Mapping[str, str] | None = None, **kwargs: Any) -> CloudSQLDatabase:
        """``$CLOUD_SQL_INSTANCE``, ``$DB_USER``, ``$DB_NAME``, ``$DB_PASS`` (unset with
        ``DB_IAM_AUTH=1``). An unset instance fails the start at once, so a Fallback moves
        on, as ``PostgresDatabase.from_env`` does."""
        env = os.environ if environ is None else environ
        if name is not None:
            kwargs["name"] = name
        iam = env.get("DB_IAM_AUTH", "") in ("1", "true", "yes")
        instance = env.get(var) or "unset:unset:unset"
        db = cls(instance, user=env.get("DB_USER", ""), db=env.get("DB_NAME", ""),
                 password=None if iam else env.get("DB_PASS"), iam=iam, **kwargs)
        if not env.get(var):
            db._missing_reason = f"{var} is not set"
            db._connect = None
        return db

    @property
    def dsn(self) -> str:
        auth = "iam" if self.iam else ("***" if self._password else "no password")
        return f"cloudsql://{self.user}:{auth}@{self.instance}/{self.db}"

    def secrets(self) -> list[str]:
        own = secret_forms(self._password) if self._password else []
        return sorted({*super().secrets(), *own}, key=len, reverse=True)

    # -- the connector's life: created in start, closed in the close stage ------------

    async def start(self) -> None:
        require_asyncio(f"CloudSQLDatabase {self.name!r}", "the Cloud SQL connector")
        if self._connect is None:
            raise DatabaseUnavailable(self._missing_reason)
        try:
            with anyio.fail_after(float(self.start_timeout)):
                self._connector = await self._create_connector()
                await super().start()
        except BaseException as exc:
            await self._close_connector()
            if isinstance(exc, TimeoutError):
                raise DatabaseUnavailable(f"Cloud SQL {self.instance}: no connection within "
                                          f"start_timeout {float(self.start_timeout):g} s"
                                          ) from None
            raise

    async def _create_connector(self) -> Any:
        try:
            from google.cloud.sql.connector import Connector
        except ImportError:  # the optional extra is not installed
            raise DatabaseUnavailable("CloudSQLDatabase needs the cloud-sql-python-connector "
                                      "package: pip install 'lifecycle-supervisor[cloudsql]'"
                                      ) from None
        credentials = self._credentials
        if credentials is None:  # may ask the metadata server: not on the event loop, and
            # abandoned (then reported by the leak check) if it outlives the start deadline
            credentials = await anyio.to_thread.run_sync(_default_credentials,
                                                         abandon_on_cancel=True)
        return Connector(loop=asyncio.get_running_loop(), enable_iam_auth=self.iam,
                         credentials=credentials, **self._options)

    async def _connect_through_connector(self) -> asyncpg.Connection:
        if self._connector is None:
            raise DatabaseUnavailable(f"Cloud SQL {self.instance}: the connector is closed")
        password = {} if self.iam or self._password is None else {"password": self._password}
        return await self._connector.connect_async(
            self.instance, "asyncpg", user=self.user, db=self.db,
            timeout=self.connect_timeout, **password)

    async def close(self) -> None:
        """The pool's close, then the connector's (its refresh tasks and HTTP session)."""
        try:
            await super().close()
        finally:
            await self._close_connector()

    async def _close_connector(self) -> None:
        connector, self._connector = self._connector, None
        if connector is None:
            return
        with anyio.move_on_after(self.connector_close_timeout, shield=True) as scope:
            try:
                await connector.close_async()
            except Exception as exc:
                self.log.warning("closing the Cloud SQL connector failed: %s",
                                 describe_error(exc, self.secrets()))
        if scope.cancelled_caught:
            self.log.warning("the Cloud SQL connector did not close within %.2f s",
                             self.connector_close_timeout)

    def report_details(self) -> dict[str, Any]:
        return {**super().report_details(), "instance": self.instance}


def _default_credentials() -> Any:
    import google.auth

    credentials, _ = google.auth.default(
        scopes=["https://www.googleapis.com/auth/sqlservice.admin"])
    return credentials


__all__ = ["CONNECTOR_CLOSE_TIMEOUT", "CloudSQLDatabase"]
