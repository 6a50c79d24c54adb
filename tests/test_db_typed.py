"""Typed dependencies (``dependency(name, kind)``, ``resolve(name, kind)``) on asyncio and
trio, and the database adapters refusing trio with a clear reason."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lifecycle import Service, StartupError, Supervisor
from lifecycle.adapters.postgres import PostgresDatabase
from lifecycle.adapters.sqlite import SQLiteDatabase

ROOT = Path(__file__).parent.parent


class Cache(Service):
    async def start(self) -> None:
        self.items: dict[str, int] = {"a": 1}


class Queue(Service):
    pass


class Reader(Service):
    depends_on = ("cache",)

    async def start(self) -> None:
        self.seen = self.dependency("cache", Cache).items["a"]  # typed: no cast, no assert
        self.plain = self.dependency("cache")  # the one-argument form is kept


class WrongReader(Service):
    depends_on = ("cache",)

    async def start(self) -> None:
        self.dependency("cache", Queue)


@pytest.mark.anyio
async def test_dependency_with_a_kind_returns_it_typed() -> None:
    async with Supervisor([Cache(), Reader()]) as sup:
        reader = sup.resolve("reader", Reader)
        assert reader.seen == 1
        assert reader.plain is sup.resolve("cache", Cache)
        assert sup.resolve("cache") is sup["cache"]


@pytest.mark.anyio
async def test_a_dependency_of_another_kind_is_an_error_naming_both_services() -> None:
    sup = Supervisor([Cache(), WrongReader()])
    with pytest.raises(StartupError):
        await sup.__aenter__()
    error = sup.report.startup["wrong_reader"].error or ""
    assert "TypeError: service 'wrong_reader' asked for 'cache' as a Queue, but it is " \
           "'cache', a Cache" in error


@pytest.mark.anyio
async def test_resolve_with_another_kind_is_a_type_error() -> None:
    async with Supervisor([Cache()]) as sup:
        with pytest.raises(TypeError, match="resolved 'cache' as a Queue, but it is 'cache', a Cache"):
            sup.resolve("cache", Queue)
        with pytest.raises(TypeError, match="kind must be a class"):
            sup.resolve("cache", len)  # type: ignore[arg-type]


@pytest.mark.parametrize("make", [
    lambda tmp: SQLiteDatabase(tmp / "a.db"),
    lambda tmp: PostgresDatabase("postgresql://app:pw@127.0.0.1:1/app"),
], ids=["sqlite", "postgres"])
def test_the_database_adapters_refuse_trio_naming_themselves(make: object, tmp_path: Path) -> None:
    db = make(tmp_path)  # type: ignore[operator]
    report = Supervisor([db], shutdown_timeout=5.0).run(backend="trio", handle_signals=False)
    error = report.startup[db.name].error or ""
    adapter = type(db).__name__
    assert f"{adapter} '{db.name}' needs asyncio" in error
    assert "does not run under trio" in error
    assert report.exit_code == 1


@pytest.mark.parametrize("database", ["postgres", "none"])
def test_the_typed_orders_example_runs_on_either_database(
    database: str, request: pytest.FixtureRequest, tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "NOTIFY_SOCKET")}
    if database == "postgres":
        env["DATABASE_URL"] = request.getfixturevalue("fresh_postgres").dsn  # its own table
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "orders.py"), "--seconds", "0.2",
         "--sqlite", str(tmp_path / "orders.db")],
        env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "placed order 1; placing it again gave None" in done.stderr
    degraded = "degraded: db ran on sqlite, not its preferred postgres" in done.stdout
    assert degraded is (database == "none")
