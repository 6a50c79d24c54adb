"""A Fallback running on a lesser candidate is degraded, and says so everywhere; a recheck
notices the preferred candidate coming back (real PostgreSQL stopped, then started)."""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any

import anyio
import pytest

from lifecycle import ConfigError, ExitCode, Fallback, Supervisor
from lifecycle.adapters.postgres import PostgresDatabase
from lifecycle.adapters.sqlite import SQLiteDatabase
from lifecycle.events import Event, FallbackRecovered, ServiceDegraded
from tests.servers import free_port

pytestmark = [pytest.mark.servers, pytest.mark.filterwarnings("error::ResourceWarning")]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # asyncpg and aiosqlite are asyncio libraries


def chain(dsn: str, tmp_path: Path, **options: Any) -> Fallback:
    return Fallback("db", PostgresDatabase(dsn, start_timeout=2.0, close_timeout=1.0),
                    SQLiteDatabase(tmp_path / "app.db"), **options)


@pytest.mark.anyio
async def test_a_fallback_on_its_second_candidate_is_degraded_everywhere(
    fresh_postgres: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    fresh_postgres.stop()
    sup = Supervisor([chain(fresh_postgres.dsn, tmp_path)], shutdown_timeout=5.0)
    events: list[Event] = []
    sup.subscribe(events.append)
    async with sup:
        health = sup.health()
        assert health["degraded"] == ["db"]
        assert health["services"]["db"]["degraded"] is True
        assert health["services"]["db"]["preferred"] == "postgres"
        assert health["services"]["db"]["winner"] == "sqlite"
        assert sup.ready  # degraded_ready=True by default
    [degraded] = [e for e in events if isinstance(e, ServiceDegraded)]
    assert (degraded.winner, degraded.preferred, degraded.ready) == ("sqlite", "postgres", True)
    assert degraded.reason is not None
    assert "Connect call failed" in degraded.reason
    [line] = [r for r in caplog.records if "DEGRADED" in r.getMessage()]
    assert line.levelno == logging.WARNING
    assert "running on sqlite instead of postgres" in line.getMessage()
    assert fresh_postgres.password not in line.getMessage()
    report = sup.report
    assert report.degraded == {"db": "sqlite"}
    assert report.to_dict()["degraded"] == {"db": "sqlite"}
    assert "degraded: db ran on sqlite, not its preferred postgres" in report.format()
    assert report.exit_code == ExitCode.OK


@pytest.mark.anyio
async def test_degraded_is_not_ready_when_degraded_ready_is_false(
    fresh_postgres: Any, tmp_path: Path,
) -> None:
    sup = Supervisor([chain(fresh_postgres.dsn, tmp_path / "up", degraded_ready=False)],
                     shutdown_timeout=5.0)
    async with sup:  # PostgreSQL is up: not degraded, ready
        assert sup.health()["degraded"] == []
        assert sup.health()["services"]["db"]["degraded"] is False
        assert sup.ready
    fresh_postgres.stop()
    sup = Supervisor([chain(fresh_postgres.dsn, tmp_path / "down", degraded_ready=False)],
                     shutdown_timeout=5.0)
    async with sup:
        assert sup.started
        assert not sup.ready
        assert sup.health()["ready"] is False
        assert sup.health()["services"]["db"]["degraded_ready"] is False


@pytest.mark.anyio
@pytest.mark.parametrize("on_recovered", ["alert", "restart"])
async def test_recheck_notices_the_preferred_candidate_coming_back(
    fresh_postgres: Any, tmp_path: Path, on_recovered: str,
) -> None:
    fresh_postgres.stop()
    sup = Supervisor([chain(fresh_postgres.dsn, tmp_path, recheck=0.2,
                            on_recovered=on_recovered)], shutdown_timeout=5.0)
    recovered = anyio.Event()
    seen: list[FallbackRecovered] = []

    def on_event(event: Event) -> None:
        if isinstance(event, FallbackRecovered):
            seen.append(event)
            recovered.set()

    sup.subscribe(on_event)
    async with sup:
        assert sup["db"].name == "sqlite"
        await anyio.to_thread.run_sync(fresh_postgres.start)
        with anyio.fail_after(20):
            await recovered.wait()
        assert sup["db"].name == "sqlite"  # never switched under running code
        assert sup.health()["services"]["db"]["recovered"] == "postgres"
        assert sup.shutdown_requested is (on_recovered == "restart")
    assert [(e.candidate, e.action) for e in seen] == [("postgres", on_recovered)]
    report = sup.report
    if on_recovered == "restart":
        assert report.exit_code == ExitCode.RESTART_REQUESTED == 75
        assert report.restart_requested is not None
        assert "postgres" in report.restart_requested
    else:
        assert report.exit_code == ExitCode.OK
    assert report.leaks is not None
    assert report.leaks.ok, report.format()  # the probe's pool was closed


@pytest.mark.anyio
async def test_a_recheck_probe_is_bounded_by_the_candidate_start_deadline(
    blackhole: tuple[str, int], tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="lifecycle")
    dsn = f"postgresql://app:pw@{blackhole[0]}:{blackhole[1]}/app"
    db = Fallback("db", PostgresDatabase(dsn, start_timeout=0.5), SQLiteDatabase(tmp_path / "a.db"),
                  recheck=0.1)
    sup = Supervisor([db], shutdown_timeout=5.0)
    async with sup:
        await anyio.sleep(1.5)  # a span of time: probes into the blackhole, each cut at 0.5 s
        assert db.recovered is None
    probes = [r for r in caplog.records if "postgres still unavailable" in r.getMessage()
              and "no answer" in r.getMessage()]
    assert len(probes) >= 2
    stages = sup.report.shutdown["db"]
    assert all(rec.clean for rec in stages.values()), sup.report.format()
    assert sup.report.leaks is not None
    assert sup.report.leaks.ok, sup.report.format()


@pytest.mark.parametrize(("options", "message"), [
    ({"on_recovered": "restart"}, "needs recheck"),
    ({"recheck": 5.0, "on_recovered": "reboot"}, "on_recovered must be one of"),
    ({"recheck": 0}, "recheck"),
    ({"degraded_ready": "yes"}, "degraded_ready must be True or False"),
])
def test_bad_fallback_options_are_config_errors(options: dict[str, Any], message: str,
                                                tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message):
        Fallback("db", SQLiteDatabase(tmp_path / "a.db"), **options)


@pytest.mark.anyio
async def test_shutdown_cuts_a_recheck_probe_short(tmp_path: Path) -> None:
    port = free_port()  # refused at start, so the chain falls through at once
    dsn = f"postgresql://app:pw@127.0.0.1:{port}/app"
    db = Fallback("db", PostgresDatabase(dsn, start_timeout=20.0, connect_timeout=20.0),
                  SQLiteDatabase(tmp_path / "a.db"), recheck=0.05)
    sup = Supervisor([db], shutdown_timeout=25.0)
    with socket.socket() as dead_proxy:
        async with sup:
            assert sup["db"].name == "sqlite"
            # now a dead proxy on that port: it accepts TCP (the kernel's backlog) and never
            # answers, so the next probe hangs until its 20 s deadline
            dead_proxy.bind(("127.0.0.1", port))
            dead_proxy.listen(16)
            await anyio.sleep(0.5)  # a span of time: a probe is under way
    tasks = sup.report.shutdown["db"]["tasks"]
    assert tasks.outcome == "ok"
    assert tasks.elapsed < 1.0, sup.report.format()  # not the probe's 20 s
    assert sup.report.leaks is not None
    assert sup.report.leaks.ok, sup.report.format()


def test_a_fallback_depends_on_given_as_one_name_is_not_split(tmp_path: Path) -> None:
    chain = Fallback("db", SQLiteDatabase(tmp_path / "a.db"), depends_on="cache")
    assert chain.depends_on == ("cache",)
