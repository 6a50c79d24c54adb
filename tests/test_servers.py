"""The real-server test infrastructure itself (tests/servers/): each server answers over a real
connection, each fault behaves as in production, and nothing is left running afterwards."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest

from tests.servers import ServerUnavailable, faults, is_alive, process_state
from tests.servers.fixtures import REQUIRE_ENV, unavailable
from tests.servers.postgres import PostgresServer, PostgresTemplate
from tests.servers.victoria import VictoriaMetrics, selector

# asyncpg and aiohttp are asyncio libraries.
pytestmark = pytest.mark.anyio

CONNECT_TIMEOUT = 10.0
STALL_TIMEOUT = 0.5  # how long a client waits on a stalled server before giving up


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def post_lines(url: str, lines: list[str]) -> int:
    """Write line protocol the way an InfluxDB v2 client does; returns the HTTP status."""
    params = {"org": "test", "bucket": "test", "precision": "ms"}
    timeout = aiohttp.ClientTimeout(total=CONNECT_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.post(
        url, params=params, data="\n".join(lines), headers={"Authorization": "Token t"}
    ) as response:
        return response.status


# --- PostgreSQL -----------------------------------------------------------------------------


async def test_postgres_answers(postgres: PostgresServer) -> None:
    conn = await asyncpg.connect(postgres.dsn, timeout=CONNECT_TIMEOUT)
    try:
        assert await conn.fetchval("select 1") == 1
        assert await conn.fetchval("select current_user") == postgres.user
        assert await conn.fetchval("select current_database()") == postgres.database
    finally:
        await conn.close(timeout=5)
    dsn = urlsplit(postgres.dsn)
    assert (dsn.scheme, dsn.hostname, dsn.port) == ("postgresql", "127.0.0.1", postgres.port)
    assert (dsn.username, dsn.password) == (postgres.user, postgres.password)
    assert dsn.path == f"/{postgres.database}"


async def test_postgres_needs_the_password(postgres: PostgresServer) -> None:
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(
            host=postgres.host, port=postgres.port, user=postgres.user, password="wrong",
            database=postgres.database, timeout=CONNECT_TIMEOUT,
        )
    assert postgres.password not in repr(postgres)


async def test_postgres_stall_and_resume(fresh_postgres: PostgresServer) -> None:
    pg = fresh_postgres
    conn = await asyncpg.connect(pg.dsn, timeout=CONNECT_TIMEOUT)
    try:
        with pg.stalled():
            assert pg.pid is not None
            stopped = [pg.pid, *pg.backend_pids()]
            assert len(stopped) > 2  # postmaster, our backend, background processes
            assert {process_state(pid) for pid in stopped} == {"T"}
            with pytest.raises(asyncio.TimeoutError):
                await conn.fetchval("select 1", timeout=STALL_TIMEOUT)
            with pytest.raises(asyncio.TimeoutError):  # TCP connects, startup never answers
                await asyncpg.connect(pg.dsn, timeout=STALL_TIMEOUT)
        assert not pg.is_stalled
        assert await conn.fetchval("select 1", timeout=CONNECT_TIMEOUT) == 1
    finally:
        await conn.close(timeout=5)


async def test_postgres_kill_restart_stop_start(fresh_postgres: PostgresServer) -> None:
    pg = fresh_postgres
    conn = await asyncpg.connect(pg.dsn, timeout=CONNECT_TIMEOUT)
    await conn.execute("create table t (x int); insert into t values (42)")
    assert pg.pid is not None
    processes = [pg.pid, *pg.backend_pids()]

    pg.kill()
    assert not pg.running
    assert not any(is_alive(pid) for pid in processes)
    with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
        await conn.fetchval("select 1", timeout=CONNECT_TIMEOUT)
    conn.terminate()
    with pytest.raises(OSError):  # refused: nothing listens any more
        await asyncpg.connect(pg.dsn, timeout=CONNECT_TIMEOUT)

    pg.restart()  # crash recovery; committed rows survive
    conn = await asyncpg.connect(pg.dsn, timeout=CONNECT_TIMEOUT)
    try:
        assert await conn.fetchval("select x from t") == 42
    finally:
        await conn.close(timeout=5)

    pg.stop()
    assert not pg.running
    pg.start()
    conn = await asyncpg.connect(pg.dsn, timeout=CONNECT_TIMEOUT)
    try:
        assert await conn.fetchval("select count(*) from t") == 1
        sessions = f"select count(*) from pg_stat_activity where usename = '{pg.user}'"
        assert pg.admin_sql(sessions) == "1"
    finally:
        await conn.close(timeout=5)


# --- VictoriaMetrics ------------------------------------------------------------------------


async def test_victoria_counts_what_was_written(
    victoria: VictoriaMetrics, unique_tag: str
) -> None:
    start = now_ms()
    lines = [f"cpu,test={unique_tag},host=a value={i} {start + i}" for i in range(5)]
    lines.append(lines[-1])  # a replayed point: same series, same millisecond
    assert await post_lines(victoria.write_url, lines) == 204

    assert victoria.count("cpu_value", test=unique_tag) == 5
    assert victoria.raw_count("cpu_value", test=unique_tag) == 6
    assert victoria.count("cpu_value", test=unique_tag, host="b") == 0
    [row] = victoria.export(selector("cpu_value", {"test": unique_tag}))
    assert row["metric"] == {"__name__": "cpu_value", "test": unique_tag, "host": "a"}
    assert sorted(set(row["timestamps"])) == [start + i for i in range(5)]


async def test_victoria_wait_count(victoria: VictoriaMetrics, unique_tag: str) -> None:
    start = now_ms()
    victoria.write([f"mem,test={unique_tag} used={i} {start + i}" for i in range(3)])
    assert victoria.wait_count("mem_used", 3, timeout=10, test=unique_tag) == 3


async def test_victoria_kill_and_restart_keep_data(
    fresh_victoria: VictoriaMetrics, unique_tag: str
) -> None:
    vm = fresh_victoria
    start = now_ms()
    assert await post_lines(vm.write_url, [f"disk,test={unique_tag} free=1 {start}"]) == 204
    vm.persist()
    vm.kill()
    assert not vm.running
    with pytest.raises(aiohttp.ClientConnectionError):
        await post_lines(vm.write_url, [f"disk,test={unique_tag} free=2 {start + 1}"])

    vm.restart()
    assert vm.count("disk_free", test=unique_tag) == 1
    assert await post_lines(vm.write_url, [f"disk,test={unique_tag} free=3 {start + 2}"]) == 204
    vm.restart()  # graceful: nothing needs persist()
    assert vm.count("disk_free", test=unique_tag) == 2


async def test_victoria_stall_and_resume(fresh_victoria: VictoriaMetrics) -> None:
    vm = fresh_victoria
    timeout = aiohttp.ClientTimeout(total=STALL_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        with vm.stalled():
            assert vm.pid is not None
            assert process_state(vm.pid) == "T"
            with pytest.raises(asyncio.TimeoutError):
                await session.get(f"{vm.url}/health")
        async with session.get(
            f"{vm.url}/health", timeout=aiohttp.ClientTimeout(total=CONNECT_TIMEOUT)
        ) as response:
            assert response.status == 200


# --- faults ---------------------------------------------------------------------------------


async def test_blackhole_accepts_and_never_answers(blackhole: tuple[str, int]) -> None:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(*blackhole), 5)
    try:
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(reader.read(1), STALL_TIMEOUT)
    finally:
        writer.close()
        await writer.wait_closed()
    host, port = blackhole
    with pytest.raises(asyncio.TimeoutError):  # a database client hangs the same way
        await asyncpg.connect(host=host, port=port, user="x", timeout=STALL_TIMEOUT)


async def test_closed_port_refuses(closed_port: tuple[str, int]) -> None:
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(*closed_port)


def test_blackhole_leaves_no_thread_or_socket() -> None:
    before = set(threading.enumerate())
    with faults.blackhole() as address:
        clients = [socket.create_connection(address, timeout=5) for _ in range(3)]
        clients[0].close()  # a client that gives up
    assert set(threading.enumerate()) == before
    with pytest.raises(OSError):  # the listener is gone too
        socket.create_connection(address, timeout=5).close()
    for client in clients[1:]:
        client.close()


# --- the infrastructure ---------------------------------------------------------------------


def test_teardown_of_stalled_servers_leaves_nothing(postgres_template: PostgresTemplate) -> None:
    with PostgresServer(postgres_template) as pg:
        assert pg.pid is not None
        processes, directory = [pg.pid, *pg.backend_pids()], pg.dir
        pg.stall()
    assert not any(is_alive(pid) for pid in processes)
    assert not Path(directory).exists()

    try:
        vm = VictoriaMetrics()
    except ServerUnavailable as exc:
        unavailable(str(exc))
    with vm:
        assert vm.pid is not None
        pid, directory = vm.pid, vm.dir
        vm.stall()
    assert not is_alive(pid)
    assert not Path(directory).exists()


def test_missing_server_skips_or_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install"):
        unavailable("not found: apt-get install victoria-metrics")
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="apt-get install"):
        unavailable("not found: apt-get install victoria-metrics")
