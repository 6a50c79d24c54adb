"""SQLiteDatabase: placeholders, transactions, serialisation, deadlines, and its thread."""

from __future__ import annotations

import gc
import random
import sqlite3
import threading
import warnings
from pathlib import Path

import anyio
import pytest

from lifecycle import LeakCheck, Supervisor
from lifecycle.adapters.db import (
    DatabaseClosed,
    DatabaseError,
    DatabaseUnavailable,
    IntegrityError,
    QueryTimeout,
)
from lifecycle.adapters.db import translate_placeholders as tr
from lifecycle.adapters.sqlite import SQLiteDatabase

# An aiosqlite connection dropped unclosed warns from __del__ (and only then stops its
# thread): with the warning an error, that fails the test instead of hiding the bug.
pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # aiosqlite is asyncio-only


def aiosqlite_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if "_connection_worker_thread" in t.name
            or type(t).__module__.startswith("aiosqlite")]


# -- $n placeholders ---------------------------------------------------------------------

@pytest.mark.parametrize(("sql", "expected"), [
    ("SELECT $1", "SELECT ?1"),
    ("SELECT $1, $2, $1", "SELECT ?1, ?2, ?1"),
    ("SELECT $10+$2", "SELECT ?10+?2"),
    ("SELECT '$1', $1", "SELECT '$1', ?1"),
    ("SELECT 'it''s $1', $2", "SELECT 'it''s $1', ?2"),
    ('SELECT "col$1", "a""$2" FROM t WHERE x = $1', 'SELECT "col$1", "a""$2" FROM t WHERE x = ?1'),
    ("SELECT `$1`, [$2] FROM t WHERE a=$3", "SELECT `$1`, [$2] FROM t WHERE a=?3"),
    ("SELECT $1 -- not $2\n, $3", "SELECT ?1 -- not $2\n, ?3"),
    ("SELECT /* $1 */ $2", "SELECT /* $1 */ ?2"),
    ("SELECT a$1 FROM t WHERE b = $1", "SELECT a$1 FROM t WHERE b = ?1"),
    ("SELECT $$ $x $", "SELECT $$ $x $"),
    ("SELECT 'unterminated $1", "SELECT 'unterminated $1"),
    ("SELECT ?", "SELECT ?"),
])
def test_translate_placeholders(sql: str, expected: str) -> None:
    assert tr(sql) == expected


def test_placeholder_zero_is_rejected() -> None:
    with pytest.raises(DatabaseError, match=r"\$0"):
        tr("SELECT $0")


# -- basics ------------------------------------------------------------------------------

@pytest.mark.anyio
async def test_start_creates_directory_and_sets_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "app.db"
    db = SQLiteDatabase(path, busy_timeout=1.5)
    await db.start()
    try:
        assert path.exists()
        assert await db.fetchval("PRAGMA journal_mode") == "wal"
        assert await db.fetchval("PRAGMA foreign_keys") == 1
        assert await db.fetchval("PRAGMA busy_timeout") == 1500
        assert (await db.check()).ok
    finally:
        await db.close()
    assert db.report_details()["thread_ended"] is True
    assert db.report_details()["close"] == "graceful"


@pytest.mark.anyio
async def test_memory_database_rows_are_dicts_and_placeholders_repeat() -> None:
    db = SQLiteDatabase(":memory:")
    await db.start()
    try:
        await db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b TEXT)")
        assert await db.execute("INSERT INTO t (a, b) VALUES ($1, $1)", "x") == 1
        await db.executemany("INSERT INTO t (a, b) VALUES ($2, $1)", [("1", "2"), ("3", "4")])
        rows = await db.fetch("SELECT a, b FROM t WHERE a = $1 OR b = $1 ORDER BY id", "x")
        assert rows == [{"a": "x", "b": "x"}]
        assert await db.fetchrow("SELECT a FROM t WHERE a = '$1'") is None
        assert await db.fetchval("SELECT count(*) FROM t") == 3
        assert await db.execute("UPDATE t SET a = $1 WHERE id > $2", "y", 1) == 2
        assert await db.execute("CREATE INDEX t_a ON t (a)") == 0
    finally:
        await db.close()


@pytest.mark.anyio
async def test_foreign_keys_are_enforced(tmp_path: Path) -> None:
    db = SQLiteDatabase(tmp_path / "fk.db")
    await db.start()
    try:
        await db.execute("CREATE TABLE p (id INTEGER PRIMARY KEY)")
        await db.execute("CREATE TABLE c (id INTEGER PRIMARY KEY, p INTEGER REFERENCES p(id))")
        with pytest.raises(IntegrityError) as info:
            await db.execute("INSERT INTO c (p) VALUES ($1)", 42)
        assert info.value.kind == "foreign_key"
    finally:
        await db.close()


@pytest.mark.anyio
async def test_executemany_is_atomic(tmp_path: Path) -> None:
    db = SQLiteDatabase(tmp_path / "m.db")
    await db.start()
    try:
        await db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        with pytest.raises(IntegrityError):
            await db.executemany("INSERT INTO t (id) VALUES ($1)", [(1,), (2,), (1,)])
        assert await db.fetchval("SELECT count(*) FROM t") == 0
    finally:
        await db.close()


@pytest.mark.anyio
async def test_not_started_and_closed_are_clear_errors(tmp_path: Path) -> None:
    db = SQLiteDatabase(tmp_path / "c.db")
    with pytest.raises(DatabaseClosed, match="not started"):
        await db.fetch("SELECT 1")
    await db.start()
    await db.close()
    with pytest.raises(DatabaseClosed):
        await db.fetch("SELECT 1")


# -- transactions -------------------------------------------------------------------------

@pytest.mark.anyio
async def test_concurrent_transactions_do_not_interleave(tmp_path: Path) -> None:
    """Read-modify-write in 20 concurrent transactions: no lost update, no nested BEGIN."""
    db = SQLiteDatabase(tmp_path / "s.db")
    await db.start()
    try:
        await db.execute("CREATE TABLE counter (n INTEGER)")
        await db.execute("INSERT INTO counter VALUES (0)")

        async def bump() -> None:
            async with db.transaction():
                n = await db.fetchval("SELECT n FROM counter")
                await anyio.sleep(0.001)  # let the other tasks run: they must wait
                await db.execute("UPDATE counter SET n = $1", n + 1)

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(bump)
        assert await db.fetchval("SELECT n FROM counter") == 20
    finally:
        await db.close()


@pytest.mark.anyio
async def test_rollback_on_exception_and_on_cancellation(tmp_path: Path) -> None:
    db = SQLiteDatabase(tmp_path / "r.db")
    await db.start()
    try:
        await db.execute("CREATE TABLE t (v TEXT)")
        async def failing() -> None:
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO t VALUES ($1)", "boom")
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            await failing()
        with anyio.move_on_after(0.05):
            async with db.transaction():
                await db.execute("INSERT INTO t VALUES ($1)", "cancelled")
                await anyio.sleep_forever()
        assert await db.fetch("SELECT v FROM t") == []
        # the connection is usable again: no transaction left open
        async with db.transaction():
            await db.execute("INSERT INTO t VALUES ($1)", "ok")
        assert await db.fetch("SELECT v FROM t") == [{"v": "ok"}]
    finally:
        await db.close()


@pytest.mark.anyio
async def test_another_task_waits_for_the_transaction(tmp_path: Path) -> None:
    db = SQLiteDatabase(tmp_path / "w.db", acquire_timeout=0.3)
    await db.start()
    try:
        await db.execute("CREATE TABLE t (v INTEGER)")
        inside = anyio.Event()
        release = anyio.Event()

        async def holder() -> None:
            async with db.transaction():
                await db.execute("INSERT INTO t VALUES (1)")
                inside.set()
                await release.wait()

        async with anyio.create_task_group() as tg:
            tg.start_soon(holder)
            await inside.wait()
            started = anyio.current_time()
            with pytest.raises(QueryTimeout, match="another task"):
                await db.fetchval("SELECT count(*) FROM t")
            assert 0.25 <= anyio.current_time() - started < 2.0
            release.set()
        assert await db.fetchval("SELECT count(*) FROM t") == 1
    finally:
        await db.close()


@pytest.mark.anyio
async def test_a_transaction_belongs_to_its_task_not_to_tasks_it_starts(tmp_path: Path) -> None:
    """A child task does not run inside its parent's transaction: it waits for the lock
    (here past its acquire_timeout, since the parent waits for it inside the block)."""
    db = SQLiteDatabase(tmp_path / "o.db", acquire_timeout=0.2)
    await db.start()
    try:
        await db.execute("CREATE TABLE t (v INTEGER)")
        outcome: list[str] = []

        async def child() -> None:
            try:
                await db.execute("INSERT INTO t VALUES (2)")
                outcome.append("joined the parent's transaction")
            except QueryTimeout:
                outcome.append("waited")

        async with db.transaction():
            await db.execute("INSERT INTO t VALUES (1)")
            async with anyio.create_task_group() as tg:
                tg.start_soon(child)
        assert outcome == ["waited"]
        assert await db.fetch("SELECT v FROM t") == [{"v": 1}]
    finally:
        await db.close()


# -- deadlines ---------------------------------------------------------------------------

SLOW_QUERY = """
    WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 2000000000)
    SELECT count(*) FROM c
"""


@pytest.mark.anyio
async def test_command_timeout_interrupts_the_statement(tmp_path: Path) -> None:
    db = SQLiteDatabase(tmp_path / "t.db")
    await db.start()
    try:
        started = anyio.current_time()
        with pytest.raises(QueryTimeout, match=r"within 0\.2 s"):
            await db.fetchval(SLOW_QUERY, timeout=0.2)
        assert anyio.current_time() - started < 2.0
        # interrupted, not left running: the next statement answers at once
        with anyio.fail_after(2.0):
            assert await db.fetchval("SELECT 1") == 1
    finally:
        await db.close()


@pytest.mark.anyio
async def test_a_cancelled_statement_is_interrupted(tmp_path: Path) -> None:
    db = SQLiteDatabase(tmp_path / "i.db")
    await db.start()
    try:
        with anyio.move_on_after(0.2) as scope:
            await db.fetchval(SLOW_QUERY)
        assert scope.cancelled_caught
        with anyio.fail_after(2.0):  # not queued behind a statement still running
            assert await db.fetchval("SELECT 1") == 1
    finally:
        await db.close()
    assert db.report_details()["close"] == "graceful"


@pytest.mark.anyio
async def test_close_cuts_off_a_held_transaction_within_its_deadline(tmp_path: Path) -> None:
    db = SQLiteDatabase(tmp_path / "h.db", close_timeout=1.0)
    await db.start()
    inside = anyio.Event()
    errors: list[BaseException] = []

    async def stuck_user() -> None:
        try:
            async with db.transaction():
                await db.execute("CREATE TABLE t (v INTEGER)")
                inside.set()
                await db.fetchval(SLOW_QUERY)  # runs far past the close deadline
        except Exception as exc:
            errors.append(exc)

    async with LeakCheck(settle=1.0) as check, anyio.create_task_group() as tg:
        tg.start_soon(stuck_user, name="stuck-user")
        await inside.wait()
        started = anyio.current_time()
        await db.close()
        elapsed = anyio.current_time() - started
    assert elapsed < 1.0 + 0.5
    details = db.report_details()
    assert details["close"] == "forced"
    assert details["thread_ended"] is True
    assert [c["task"] for c in details["cut_off"]] == ["stuck-user"]
    assert "count(*)" in details["cut_off"][0]["sql"]
    assert errors, "the cut-off user got an error"
    check.assert_clean()


@pytest.mark.anyio
async def test_a_cancelled_close_still_ends_the_thread(tmp_path: Path) -> None:
    db = SQLiteDatabase(tmp_path / "cc.db", close_timeout=2.0)
    await db.start()
    inside = anyio.Event()

    errors: list[Exception] = []

    async def holder() -> None:
        try:
            async with db.transaction():
                inside.set()
                await anyio.sleep(0.5)
                await db.execute("SELECT 1")
        except DatabaseClosed as exc:
            errors.append(exc)

    async with LeakCheck(settle=1.0) as check, anyio.create_task_group() as tg:
        tg.start_soon(holder)
        await inside.wait()
        with anyio.move_on_after(0.05) as scope:  # the supervisor gave up on the stage
            await db.close()
        assert scope.cancelled_caught
    assert db.report_details()["thread_ended"] is True
    assert len(errors) == 1
    check.assert_clean()


# -- the worker thread ---------------------------------------------------------------------

@pytest.mark.anyio
@pytest.mark.parametrize("delay", [0.0, 0.0005, 0.002, 0.01])
async def test_cancelled_start_leaves_no_thread(tmp_path: Path, delay: float) -> None:
    async with LeakCheck(settle=1.0) as check:
        db = SQLiteDatabase(tmp_path / "x" / "c.db")
        with anyio.move_on_after(delay):
            await db.start()
            await db.close()  # when the start won the race
    check.assert_clean()


@pytest.mark.anyio
async def test_starts_cancelled_while_the_file_opens_leave_no_connection_unclosed(
        tmp_path: Path) -> None:
    """aiosqlite drops a connection its worker opened for a start cancelled meanwhile; the
    adapter closes it. Python 3.13+ warns about an unclosed connection (ResourceWarning), so
    the matrix's 3.13 run is where this fails without the fix (231 of 300 starts, measured)."""
    rng = random.Random(7)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for i in range(120):
            db = SQLiteDatabase(tmp_path / f"c{i}.db")
            with anyio.move_on_after(rng.choice([0.0, 0.0003, 0.0006, 0.001, 0.002])):
                await db.start()
                await db.close()
        await anyio.sleep(0.05)  # the worker's late answers reach the loop, and are dropped
        gc.collect()
    unclosed = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert not unclosed, f"{len(unclosed)} connections left unclosed: {unclosed[0].message}"


@pytest.mark.anyio
async def test_start_cancelled_while_waiting_for_a_lock_leaves_no_thread(tmp_path: Path) -> None:
    """Another process holds the file locked: the start blocks in SQLite's busy wait."""
    path = tmp_path / "locked.db"
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("CREATE TABLE t (v)")
    other.execute("BEGIN EXCLUSIVE")
    try:
        async with LeakCheck(settle=2.0) as check:
            db = SQLiteDatabase(path, busy_timeout=1.0)
            with anyio.move_on_after(0.3) as scope:
                await db.start()
            assert scope.cancelled_caught
    finally:
        other.rollback()
        other.close()
    check.assert_clean()


@pytest.mark.anyio
async def test_failed_start_is_unavailable_and_leaves_no_thread(tmp_path: Path) -> None:
    (tmp_path / "a-dir.db").mkdir()
    async with LeakCheck(settle=1.0) as check:
        db = SQLiteDatabase(tmp_path / "a-dir.db")
        with pytest.raises(DatabaseUnavailable, match=r"a-dir\.db"):
            await db.start()
    check.assert_clean()


@pytest.mark.anyio
async def test_under_a_supervisor_no_thread_is_left(tmp_path: Path) -> None:
    before = set(aiosqlite_threads())
    sup = Supervisor([SQLiteDatabase(tmp_path / "s.db", name="db")], shutdown_timeout=5.0)
    async with sup:
        db = sup["db"]
        assert isinstance(db, SQLiteDatabase)
        assert set(aiosqlite_threads()) - before
        assert await db.fetchval("SELECT $1 + $1", 2) == 4
    report = sup.report
    assert report.leaks is not None
    assert report.leaks.ok, report.format()
    assert report.shutdown["db"]["close"].outcome == "ok"
    assert report.details["db"]["thread_ended"] is True
    assert not set(aiosqlite_threads()) - before
