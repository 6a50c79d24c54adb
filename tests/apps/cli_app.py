"""Apps for the CLI tests: ``python -m lifecycle run|check tests.apps.cli_app:NAME``."""

from __future__ import annotations

import os

import anyio

from lifecycle import Fallback, Service, Stage, Supervisor, every


class Config(Service):
    start_timeout = 2.0


class Postgres(Service):
    start_timeout = 3.0

    async def start(self) -> None:
        raise ConnectionRefusedError("connection refused")


class SQLite(Service):
    name = "sqlite"
    start_timeout = 2.0
    stop_timeout = 3.0


class Api(Service):
    depends_on = ("config", "db")
    stop_stages = (Stage("drain", 2.0), Stage("flush", 5.0), Stage("close", 3.0))

    async def run(self) -> None:
        if os.environ.get("CLI_APP_MODE") == "batch":
            await anyio.sleep(0.2)
            return  # a required run() that returns ends the app: exit code 0
        await self.wait_shutdown()

    @every(60.0)
    async def compact(self) -> None:
        pass

    async def drain(self) -> None:
        pass

    async def flush(self) -> None:
        if os.environ.get("CLI_APP_MODE") == "stuck":
            await anyio.sleep(60)

    async def close(self) -> None:
        pass


def app() -> Supervisor:
    """A good app: config and a db fallback chain in parallel, then the api."""
    return Supervisor([Config(), Fallback("db", Postgres(), SQLite()), Api()],
                      shutdown_timeout=20.0, name="cli-app")


instance = app()


class A(Service):
    depends_on = ("b",)


class B(Service):
    depends_on = ("a",)


def cycle() -> Supervisor:
    return Supervisor([A(), B(), Config()])


def unknown() -> Supervisor:
    return Supervisor([Api()])  # depends on config and db, which are missing


def tight() -> Supervisor:
    """Legal (each service fits the budget) but the chain of closes may not."""
    return Supervisor([Config(stop_timeout=6.0), SQLite(name="db", stop_timeout=6.0), Api()],
                      shutdown_timeout=12.0, name="tight")


class Broken(Service):
    async def start(self) -> None:
        raise OSError("disk full")


def broken_start() -> Supervisor:
    return Supervisor([Broken()], name="broken")


def raises() -> Supervisor:
    raise RuntimeError("the factory itself is buggy")


not_a_supervisor = 42
