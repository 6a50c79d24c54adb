"""PostgresDatabase against a real server: deadlines everywhere, bounded close, no secrets."""

from __future__ import annotations

import logging
import traceback
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from lifecycle import LeakCheck, Supervisor, redact
from lifecycle.adapters.db import DatabaseClosed, DatabaseUnavailable, QueryTimeout
from lifecycle.adapters.postgres import PostgresDatabase

# An object dropped unclosed (an aiosqlite or asyncpg connection) warns from __del__: with
# the warning an error, that surfaces as an unraisable exception and fails the test.
pytestmark = [pytest.mark.servers, pytest.mark.filterwarnings("error::ResourceWarning")]

SECRET = "pw-Zq8sEcReT-4711"  # distinctive: searched for in every text below


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # asyncpg is asyncio-only


@pytest.fixture
async def db(postgres: Any) -> AsyncIterator[PostgresDatabase]:
    database = PostgresDatabase(postgres.dsn, start_timeout=5.0)
    await database.start()
    try:
        yield database
    finally:
        await database.close()


def all_text(exc: BaseException) -> str:
    """Everything an exception can show: str, repr, the formatted chain."""
    return " ".join([str(exc), repr(exc), *traceback.format_exception(exc)])


async def wait_for_backends(server: Any, expected: int, timeout: float = 5.0) -> int:
    """Connections of the test role the server still sees (backends exit asynchronously)."""
    sql = f"SELECT count(*) FROM pg_stat_activity WHERE usename = '{server.user}'"
    count = -1
    with anyio.move_on_after(timeout):
        while (count := int(await anyio.to_thread.run_sync(server.admin_sql, sql))) != expected:
            await anyio.sleep(0.05)
    return count


# -- masking (no server needed) -----------------------------------------------------------

@pytest.mark.parametrize(("url", "masked"), [
    ("postgresql://app:s3cret@db:5432/app", "postgresql://app:***@db:5432/app"),
    ("postgresql://app:p%40ss%2Fw@db/app?sslmode=require",
     "postgresql://app:***@db/app?sslmode=require"),
    ("postgres://app@db/app?password=s3cret&application_name=x",
     "postgres://app@db/app?password=***&application_name=x"),
    ("postgresql://db/app", "postgresql://db/app"),
    ("postgresql://app:s3cret@[::1]:5432/app", "postgresql://app:***@[::1]:5432/app"),
    ("http://influx:8086?token=abc", "http://influx:8086?token=***"),
])
def test_mask_url(url: str, masked: str) -> None:
    assert redact.mask_url(url) == masked


def test_secrets_cover_every_spelling_and_scrub_removes_them() -> None:
    db = PostgresDatabase("postgresql://app:p%40ss%2Fw0rd@db/app")
    assert set(db.secrets()) >= {"p@ss/w0rd", "p%40ss%2Fw0rd"}
    text = "failed: p@ss/w0rd and postgresql://app:p%40ss%2Fw0rd@db/app"
    scrubbed = redact.scrub(text, db.secrets())
    assert "p@ss" not in scrubbed
    assert "w0rd" not in scrubbed
    assert redact.safe_cause(ValueError(text), db.secrets()) is None
    assert "***" in repr(db)
    assert "w0rd" not in repr(db)


# -- the portable interface ---------------------------------------------------------------

@pytest.mark.anyio
async def test_rows_are_dicts_and_counts_are_rows(db: PostgresDatabase) -> None:
    # A temp table lives on one connection: the transaction pins it for the whole block.
    async with db.transaction():
        await db.execute("CREATE TEMP TABLE u (id serial PRIMARY KEY, a text, b text)")
        assert await db.execute("INSERT INTO u (a, b) VALUES ($1, $1)", "x") == 1
        await db.executemany("INSERT INTO u (a, b) VALUES ($2, $1)", [("1", "2"), ("3", "4")])
        rows = await db.fetch("SELECT a, b FROM u WHERE a = $1 OR b = $1 ORDER BY id", "x")
        assert rows == [{"a": "x", "b": "x"}]
        assert type(rows[0]) is dict
        assert await db.fetchrow("SELECT a FROM u WHERE a = '$1'") is None
        assert await db.fetchval("SELECT count(*) FROM u") == 3
        assert await db.execute("UPDATE u SET a = $1 WHERE id > $2", "y", 1) == 2
        assert await db.execute("CREATE INDEX ON u (a)") == 0


@pytest.mark.anyio
async def test_rollback_on_cancellation_keeps_the_connection_usable(db: PostgresDatabase) -> None:
    table = "t_cancel_rollback"
    await db.execute(f"DROP TABLE IF EXISTS {table}")
    await db.execute(f"CREATE TABLE {table} (v text)")
    try:
        with anyio.move_on_after(0.1):
            async with db.transaction():
                await db.execute(f"INSERT INTO {table} VALUES ($1)", "cancelled")
                await anyio.sleep_forever()
        assert await db.fetch(f"SELECT v FROM {table}") == []
        assert await db.fetchval("SELECT 1") == 1
    finally:
        await db.execute(f"DROP TABLE {table}")


@pytest.mark.anyio
async def test_a_transaction_belongs_to_its_task(db: PostgresDatabase) -> None:
    """A task started inside a transaction uses its own connection: it does not see the
    uncommitted row (and does not run concurrently on the transaction's connection)."""
    table = "t_tx_owner"
    await db.execute(f"DROP TABLE IF EXISTS {table}")
    await db.execute(f"CREATE TABLE {table} (v int)")
    seen: list[int] = []

    async def child() -> None:
        seen.append(await db.fetchval(f"SELECT count(*) FROM {table}"))

    try:
        async with db.transaction():
            await db.execute(f"INSERT INTO {table} VALUES (1)")
            async with anyio.create_task_group() as tg:
                tg.start_soon(child)
            assert await db.fetchval(f"SELECT count(*) FROM {table}") == 1
        assert seen == [0]
    finally:
        await db.execute(f"DROP TABLE {table}")


# -- deadlines ----------------------------------------------------------------------------

@pytest.mark.anyio
async def test_command_timeout(db: PostgresDatabase) -> None:
    started = anyio.current_time()
    with pytest.raises(QueryTimeout, match=r"fetchval did not finish within 0\.3 s"):
        await db.fetchval("SELECT pg_sleep(30)", timeout=0.3)
    assert anyio.current_time() - started < 3.0
    assert await db.fetchval("SELECT 2") == 2


@pytest.mark.anyio
async def test_acquire_timeout_names_the_pool_exhaustion(postgres: Any) -> None:
    db = PostgresDatabase(postgres.dsn, max_size=1, acquire_timeout=0.3)
    await db.start()
    try:
        async with db.acquire():
            started = anyio.current_time()
            with pytest.raises(QueryTimeout, match=r"no free connection within 0\.3 s"):
                await db.fetchval("SELECT 1")
            assert 0.25 <= anyio.current_time() - started < 2.0
        assert await db.fetchval("SELECT 1") == 1
    finally:
        await db.close()


@pytest.mark.anyio
async def test_check_is_healthy_then_not_while_stalled(fresh_postgres: Any) -> None:
    db = PostgresDatabase(fresh_postgres.dsn, check_timeout=0.5, close_timeout=1.0)
    await db.start()
    try:
        health = await db.check()
        assert health.ok
        assert health.detail["size"] >= 1
        with fresh_postgres.stalled():
            started = anyio.current_time()
            health = await db.check()
            assert not health.ok
            assert "no answer to SELECT 1" in health.reason
            assert anyio.current_time() - started < 2.0
    finally:
        await db.close()


@pytest.mark.anyio
async def test_not_started_and_missing_dsn() -> None:
    db = PostgresDatabase.from_env(environ={})
    with pytest.raises(DatabaseClosed):
        await db.fetch("SELECT 1")
    with anyio.fail_after(1.0), pytest.raises(DatabaseUnavailable, match="DATABASE_URL is not set"):
        await db.start()
    named = PostgresDatabase.from_env(name="main_db", var="MY_DB",
                                     environ={"MY_DB": "postgresql://db/x"})
    assert named.name == "main_db"


# -- the close ----------------------------------------------------------------------------

@pytest.mark.anyio
async def test_close_with_a_connection_checked_out_is_bounded_and_reported(
    postgres: Any, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    sup = Supervisor([PostgresDatabase(postgres.dsn, name="db", close_timeout=1.0)],
                     shutdown_timeout=5.0)
    holding = anyio.Event()

    async def forgetful_handler(db: Any) -> None:
        async with db.acquire() as conn:
            await conn.execute("SELECT 1")
            holding.set()
            await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        async with sup:
            tg.start_soon(forgetful_handler, sup["db"], name="forgetful-handler")
            await holding.wait()
            started = anyio.current_time()
        elapsed = anyio.current_time() - started
        tg.cancel_scope.cancel()
    assert elapsed < 1.0 + 1.0, elapsed
    report = sup.report
    assert report.shutdown["db"]["close"].outcome == "ok", report.format()
    details = report.details["db"]
    assert details["close"] == "terminated"
    assert [c["task"] for c in details["terminated"]] == ["forgetful-handler"]
    assert "forgetful-handler" in caplog.text
    assert postgres.password not in caplog.text
    assert postgres.password not in str(report.to_dict()) + report.format()


@pytest.mark.anyio
async def test_close_while_the_server_is_stalled_is_bounded(fresh_postgres: Any) -> None:
    db = PostgresDatabase(fresh_postgres.dsn, min_size=2, close_timeout=1.0)
    await db.start()
    assert await db.fetchval("SELECT 1") == 1
    with fresh_postgres.stalled():
        started = anyio.current_time()
        await db.close()
        elapsed = anyio.current_time() - started
    assert elapsed < 1.0 + 0.5, elapsed
    assert db.report_details()["close"] == "terminated"
    assert await wait_for_backends(fresh_postgres, 0) == 0


@pytest.mark.anyio
async def test_a_cancelled_close_still_terminates_the_pool(fresh_postgres: Any) -> None:
    db = PostgresDatabase(fresh_postgres.dsn, min_size=2, close_timeout=2.0)
    await db.start()
    async with db.acquire():
        with anyio.move_on_after(0.05) as scope:  # the supervisor gave up on the stage
            await db.close()
        assert scope.cancelled_caught
    assert db.report_details()["close"] == "terminated"
    assert await wait_for_backends(fresh_postgres, 0) == 0


# -- start failures -----------------------------------------------------------------------

@pytest.mark.anyio
async def test_wrong_password_is_never_shown(postgres: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    dsn = f"postgresql://{postgres.user}:{SECRET}@{postgres.host}:{postgres.port}/{postgres.database}"
    db = PostgresDatabase(dsn)
    assert SECRET not in repr(db)
    assert SECRET not in db.dsn
    assert SECRET in db.secrets()
    with pytest.raises(DatabaseUnavailable, match="password authentication failed") as info:
        await db.start()
    text = all_text(info.value)
    assert SECRET not in text
    assert f"{postgres.user}:***@" in str(info.value)
    assert SECRET not in caplog.text


@pytest.mark.anyio
async def test_refused_fails_fast_with_a_masked_dsn(closed_port: tuple[str, int]) -> None:
    host, port = closed_port
    db = PostgresDatabase(f"postgresql://u:{SECRET}@{host}:{port}/db", start_timeout=5.0)
    started = anyio.current_time()
    with pytest.raises(DatabaseUnavailable) as info:
        await db.start()
    assert anyio.current_time() - started < 1.0
    assert f"postgresql://u:***@{host}:{port}/db" in str(info.value)
    assert SECRET not in all_text(info.value)


@pytest.mark.anyio
async def test_start_proves_the_server_answers_even_with_min_size_0(
    closed_port: tuple[str, int],
) -> None:
    host, port = closed_port
    db = PostgresDatabase(f"postgresql://u:{SECRET}@{host}:{port}/db", min_size=0)
    with pytest.raises(DatabaseUnavailable, match="Connect call failed"):
        await db.start()


@pytest.mark.anyio
async def test_blackhole_fails_within_start_timeout(blackhole: tuple[str, int]) -> None:
    host, port = blackhole
    db = PostgresDatabase(f"postgresql://u:{SECRET}@{host}:{port}/db", start_timeout=1.0)
    expected = r"no answer after \d+\.\d+ s \(connect_timeout 5 s, start_timeout 1 s\)"
    async with LeakCheck(settle=1.0) as check:
        started = anyio.current_time()
        with pytest.raises(DatabaseUnavailable, match=expected) as info:
            await db.start()
        elapsed = anyio.current_time() - started
    assert 0.8 <= elapsed < 2.0, elapsed
    assert SECRET not in all_text(info.value)
    check.assert_clean()


@pytest.mark.anyio
async def test_cancelled_start_leaves_no_task(blackhole: tuple[str, int]) -> None:
    host, port = blackhole
    async with LeakCheck(settle=1.0) as check:
        db = PostgresDatabase(f"postgresql://u:{SECRET}@{host}:{port}/db")
        with anyio.move_on_after(0.2) as scope:
            await db.start()
        assert scope.cancelled_caught
    check.assert_clean()


@pytest.mark.anyio
async def test_half_initialised_pool_is_terminated(fresh_postgres: Any) -> None:
    """Two of three connections succeed, the third is refused by the server: the two
    must not stay open."""
    fresh_postgres.admin_sql(f"ALTER ROLE {fresh_postgres.user} CONNECTION LIMIT 2")
    db = PostgresDatabase(fresh_postgres.dsn, min_size=3, max_size=3)
    async with LeakCheck(settle=1.0) as check:
        with pytest.raises(DatabaseUnavailable, match="too many connections"):
            await db.start()
    check.assert_clean()
    assert await wait_for_backends(fresh_postgres, 0) == 0
