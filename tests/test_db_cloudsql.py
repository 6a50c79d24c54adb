"""Cloud SQL through the real Cloud SQL Python Connector, and the ``connect=`` factory.

There is no network here: the connector's calls to the SQL Admin API fail (no DNS) or, with
its endpoint pointed at a blackhole, never answer. Either way the start must end within
its deadline, the Fallback must move on to SQLite, and the connector's background tasks
and HTTP session must be gone (leak check clean). The ``connect=`` path runs against the
local PostgreSQL. (The connector itself is real; only Google's servers are out of reach.)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio
import asyncpg  # type: ignore[import-untyped]
import pytest

from lifecycle import ConfigError, Fallback, Supervisor
from lifecycle.adapters.db import DatabaseUnavailable
from lifecycle.adapters.postgres import PostgresDatabase
from lifecycle.adapters.sqlite import SQLiteDatabase

pytest.importorskip("google.cloud.sql.connector", reason="pip install 'lifecycle-supervisor[cloudsql]'")
from google.oauth2.credentials import Credentials

from lifecycle.adapters.cloudsql import CloudSQLDatabase

pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")
SECRET = "cloud-Zq8-sEcReT"
START_TIMEOUT = 2.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def cloud_sql(**options: Any) -> CloudSQLDatabase:
    """A static-token credential: the connector then goes straight for the network."""
    return CloudSQLDatabase("my-project:europe-west1:main", user="app", db="app",
                            password=SECRET, credentials=Credentials(token="not-a-real-token"),
                            start_timeout=START_TIMEOUT, **options)


@pytest.mark.anyio
@pytest.mark.parametrize("endpoint", ["no network", "blackhole"])
async def test_unreachable_cloud_sql_falls_back_to_sqlite_within_its_deadline_and_leaks_nothing(
    endpoint: str, request: pytest.FixtureRequest, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    api = None
    if endpoint == "blackhole":
        host, port = request.getfixturevalue("blackhole")
        api = f"http://{host}:{port}"
    sup = Supervisor([Fallback("db", cloud_sql(api_endpoint=api),
                               SQLiteDatabase(tmp_path / "app.db"))], shutdown_timeout=5.0)
    began = anyio.current_time()
    async with sup:
        elapsed = anyio.current_time() - began
        assert sup["db"].name == "sqlite"
        assert elapsed < START_TIMEOUT + 1.5, elapsed
    [cloud, lite] = sup.report.startup["db"].attempts
    assert cloud.candidate == "cloudsql"
    assert cloud.outcome in ("error", "timeout")
    assert lite.outcome == "ok"
    assert sup.report.leaks is not None
    assert sup.report.leaks.ok, sup.report.format()
    assert SECRET not in sup.report.format()
    assert all(SECRET not in r.getMessage() for r in caplog.records)


def test_cloud_sql_is_described_without_its_password() -> None:
    db = PostgresDatabase.cloud_sql("p:r:i", user="app", db="orders", password=SECRET)
    assert isinstance(db, CloudSQLDatabase)
    assert db.dsn == "cloudsql://app:***@p:r:i/orders"
    assert SECRET not in repr(db)
    assert SECRET in db.secrets()
    [stage] = db.stages()
    assert stage.timeout == db.close_timeout + db.connector_close_timeout
    with pytest.raises(ConfigError, match="project:region:instance"):
        CloudSQLDatabase("just-a-name", user="app", db="x")
    with pytest.raises(ConfigError, match="without a password"):
        CloudSQLDatabase("p:r:i", user="app", db="x", password="pw", iam=True)


@pytest.mark.anyio
async def test_an_unset_instance_fails_at_once() -> None:
    db = CloudSQLDatabase.from_env(environ={})
    with anyio.fail_after(1.0), pytest.raises(DatabaseUnavailable, match="CLOUD_SQL_INSTANCE is not set"):
        await db.start()


@pytest.mark.anyio
async def test_a_connect_factory_builds_the_pool(postgres: Any) -> None:
    calls = 0

    async def connect() -> asyncpg.Connection:
        nonlocal calls
        calls += 1
        return await asyncpg.connect(postgres.dsn)

    db = PostgresDatabase(None, connect=connect, min_size=2, max_size=2)
    await db.start()
    try:
        assert await db.fetchval("SELECT 41 + 1") == 42
        assert calls == 2
        assert db.pool_stats() == {"size": 2, "idle": 2, "in_use": 0, "waiting": 0, "max_size": 2}
    finally:
        await db.close()
    assert db.pool_stats()["size"] == 0


@pytest.mark.anyio
async def test_a_connect_factory_that_never_answers_is_cut_at_the_deadline(
    blackhole: tuple[str, int],
) -> None:
    host, port = blackhole

    async def connect() -> asyncpg.Connection:
        return await asyncpg.connect(host=host, port=port, user="app", password=SECRET,
                                     timeout=60)

    db = PostgresDatabase(None, connect=connect, connect_timeout=0.5, start_timeout=5.0)
    began = anyio.current_time()
    with pytest.raises(DatabaseUnavailable) as info:
        await db.start()
    assert anyio.current_time() - began < 2.0
    assert SECRET not in str(info.value)
