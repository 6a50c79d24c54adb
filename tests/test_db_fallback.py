"""Fallback("db", PostgresDatabase, SQLiteDatabase): how fast SQLite takes over, what the
report says, and that app code runs unchanged on whichever candidate won."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import anyio
import pytest

from lifecycle import Fallback, Supervisor
from lifecycle.adapters.db import Database
from lifecycle.adapters.postgres import PostgresDatabase
from lifecycle.adapters.sqlite import SQLiteDatabase

# An object dropped unclosed (an aiosqlite or asyncpg connection) warns from __del__: with
# the warning an error, that surfaces as an unraisable exception and fails the test.
pytestmark = [pytest.mark.servers, pytest.mark.filterwarnings("error::ResourceWarning")]

SECRET = "pw-Zq8sEcReT-4711"
START_TIMEOUT = 1.0  # the Postgres candidate's, small for the tests


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # asyncpg and aiosqlite are asyncio-only


def chain(pg: PostgresDatabase, tmp_path: Path) -> Supervisor:
    return Supervisor([Fallback("db", pg, SQLiteDatabase(tmp_path / "data" / "app.db"))],
                      shutdown_timeout=10.0)


def dsn_to(host: str, port: int, password: str = SECRET) -> str:
    return f"postgresql://app:{password}@{host}:{port}/app"


async def start_timed(sup: Supervisor) -> float:
    """Enter ``sup`` (start everything); return how long until the db was running."""
    started = anyio.current_time()
    await sup.__aenter__()
    return anyio.current_time() - started


def assert_secret_free(sup: Supervisor, caplog: pytest.LogCaptureFixture, secret: str) -> None:
    report = sup.report
    texts = [json.dumps(report.to_dict()), report.format(), caplog.text]
    for text in texts:
        assert secret not in text


def assert_no_leaks(sup: Supervisor) -> None:
    leaks = sup.report.leaks
    assert leaks is not None
    assert leaks.ok, sup.report.format()


# -- time to a running SQLite -----------------------------------------------------------

@pytest.mark.anyio
async def test_refused_falls_through_to_sqlite_at_once(
    closed_port: tuple[str, int], tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    sup = chain(PostgresDatabase(dsn_to(*closed_port), start_timeout=START_TIMEOUT), tmp_path)
    elapsed = await start_timed(sup)
    try:
        assert isinstance(sup["db"], SQLiteDatabase)
        assert elapsed < 0.5, elapsed  # "a fraction of a second"
    finally:
        await sup.__aexit__(None, None, None)
    record = sup.report.startup["db"]
    assert record.winner == "sqlite"
    [pg, lite] = record.attempts
    assert (pg.candidate, pg.outcome, lite.candidate, lite.outcome) == (
        "postgres", "error", "sqlite", "ok")
    assert pg.error is not None
    assert "Connect call failed" in pg.error
    assert "app:***@" in pg.error
    assert_secret_free(sup, caplog, SECRET)
    assert_no_leaks(sup)


@pytest.mark.anyio
@pytest.mark.parametrize("fault", ["blackhole", "stalled"])
async def test_unanswered_falls_through_after_start_timeout(
    fault: str, request: pytest.FixtureRequest, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    if fault == "blackhole":
        host, port = request.getfixturevalue("blackhole")
        dsn, secret = dsn_to(host, port), SECRET
    else:
        server = request.getfixturevalue("fresh_postgres")
        server.stall()
        request.addfinalizer(server.resume)
        dsn, secret = server.dsn, server.password
    sup = chain(PostgresDatabase(dsn, start_timeout=START_TIMEOUT), tmp_path)
    elapsed = await start_timed(sup)
    try:
        assert isinstance(sup["db"], SQLiteDatabase)
        assert START_TIMEOUT * 0.8 <= elapsed < START_TIMEOUT + 1.5, elapsed
    finally:
        await sup.__aexit__(None, None, None)
    [pg, lite] = sup.report.startup["db"].attempts
    assert pg.candidate == "postgres"
    assert pg.outcome in ("error", "timeout")
    assert pg.error is not None
    assert "no answer after" in pg.error or "did not finish within" in pg.error
    assert lite.outcome == "ok"
    assert_secret_free(sup, caplog, secret)
    assert_no_leaks(sup)


@pytest.mark.anyio
async def test_stopped_server_falls_through_at_once(fresh_postgres: Any, tmp_path: Path) -> None:
    fresh_postgres.stop()
    sup = chain(PostgresDatabase(fresh_postgres.dsn, start_timeout=START_TIMEOUT), tmp_path)
    elapsed = await start_timed(sup)
    try:
        assert isinstance(sup["db"], SQLiteDatabase)
        assert elapsed < 0.5, elapsed
    finally:
        await sup.__aexit__(None, None, None)


@pytest.mark.anyio
async def test_unset_database_url_falls_through_at_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    sup = chain(PostgresDatabase.from_env(start_timeout=START_TIMEOUT), tmp_path)
    elapsed = await start_timed(sup)
    try:
        assert isinstance(sup["db"], SQLiteDatabase)
        assert elapsed < 0.5, elapsed
    finally:
        await sup.__aexit__(None, None, None)
    [pg, _] = sup.report.startup["db"].attempts
    assert pg.error is not None
    assert "DATABASE_URL is not set" in pg.error


@pytest.mark.anyio
async def test_wrong_password_report_is_secret_free(
    postgres: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    dsn = f"postgresql://{postgres.user}:{SECRET}@{postgres.host}:{postgres.port}/{postgres.database}"
    sup = chain(PostgresDatabase(dsn, start_timeout=START_TIMEOUT), tmp_path)
    await start_timed(sup)
    await sup.__aexit__(None, None, None)
    [pg, lite] = sup.report.startup["db"].attempts
    assert pg.error is not None
    assert "password authentication failed" in pg.error
    assert lite.outcome == "ok"
    assert_secret_free(sup, caplog, SECRET)
    assert SECRET not in (pg.stack or "")


# -- the same app code on either candidate ------------------------------------------------

async def failing_transaction(db: Database, sql: str, error: Exception) -> None:
    async with db.transaction():
        await db.execute(sql)
        raise error


async def app_code(db: Database, table: str) -> None:
    """What an app does, knowing nothing about the back end that won."""
    await db.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                     "qty INTEGER NOT NULL)")
    try:
        assert await db.execute(f"INSERT INTO {table} (id, name, qty) VALUES ($1, $2, $3)",
                                1, "apple", 3) == 1
        await db.executemany(f"INSERT INTO {table} (id, name, qty) VALUES ($1, $2, $3)",
                             [(2, "pear", 5), (3, "plum", 0)])
        rows = await db.fetch(f"SELECT name, qty FROM {table} WHERE qty >= $1 ORDER BY id", 1)
        assert rows == [{"name": "apple", "qty": 3}, {"name": "pear", "qty": 5}]
        row = await db.fetchrow(f"SELECT name FROM {table} WHERE name = $1 OR name = $1 || 'x'",
                                "plum")
        assert row is not None
        assert row["name"] == "plum"
        assert await db.fetchrow(f"SELECT name FROM {table} WHERE id = $1", 99) is None
        assert await db.fetchval(f"SELECT name FROM {table} WHERE id = $1", 2) == "pear"

        # commit
        async with db.transaction() as tx:
            await tx.execute(f"UPDATE {table} SET qty = qty + $1 WHERE id = $2", 10, 1)
        assert await db.fetchval(f"SELECT qty FROM {table} WHERE id = 1") == 13

        # rollback on exception
        with pytest.raises(LookupError):
            await failing_transaction(db, f"DELETE FROM {table}", LookupError("out of stock"))
        assert await db.fetchval(f"SELECT count(*) FROM {table}") == 3

        # nested: the inner block rolls back alone, the outer one commits
        async with db.transaction():
            await db.execute(f"UPDATE {table} SET qty = 0 WHERE id = $1", 1)
            with pytest.raises(ValueError, match="inner"):
                await failing_transaction(db, f"DELETE FROM {table} WHERE id = 2", ValueError("inner"))
            await db.execute(f"INSERT INTO {table} (id, name, qty) VALUES ($1, '$1 ''quoted''', $1)",
                             4)
        rows = await db.fetch(f"SELECT id, name, qty FROM {table} ORDER BY id")
        assert rows == [
            {"id": 1, "name": "apple", "qty": 0},
            {"id": 2, "name": "pear", "qty": 5},
            {"id": 3, "name": "plum", "qty": 0},
            {"id": 4, "name": "$1 'quoted'", "qty": 4},
        ]
    finally:
        await db.execute(f"DROP TABLE {table}")


@pytest.mark.anyio
@pytest.mark.parametrize("winner", ["postgres", "sqlite"])
async def test_same_app_code_on_either_candidate(
    winner: str, request: pytest.FixtureRequest, tmp_path: Path,
) -> None:
    if winner == "postgres":
        dsn = request.getfixturevalue("postgres").dsn
    else:
        dsn = dsn_to(*request.getfixturevalue("closed_port"))
    sup = chain(PostgresDatabase(dsn, start_timeout=5.0), tmp_path)
    async with sup:
        db = sup["db"]
        assert isinstance(db, Database)
        assert db.name == winner
        await app_code(db, f"items_{winner}_{id(sup):x}")
    report = sup.report
    assert report.shutdown["db"]["close"].outcome == "ok", report.format()
    assert_no_leaks(sup)
