"""An app that puts one secret everywhere a text is recorded, for tests/test_redact_surfaces.py.

Every service declares the secret (``secrets()``), then leaks it: in a ``run()``
traceback, a start error, a stage that overruns (its stack), a thread left behind (its
stack), a health check's reason. The secret is written literally on the lines that run, so
stacks show it as source text too. ``python -m lifecycle run tests.apps.secret_app:app``.
"""

from __future__ import annotations

import os
import threading
import time

import anyio

from lifecycle import Health, RestartPolicy, Service, Stage, Supervisor

SECRET = "Zq8-sEcReT-pw-4711"


class Holder(Service):
    """Knows the secret (like a database knows its DSN's password)."""

    def secrets(self) -> list[str]:
        return [SECRET]


class FailingRun(Holder):
    name = "failing_run"
    optional = True
    restart = RestartPolicy(on="never")

    async def run(self) -> None:
        raise RuntimeError("could not log in with Zq8-sEcReT-pw-4711")


class FailingStart(Holder):
    name = "failing_start"
    optional = True

    async def start(self) -> None:
        raise ConnectionRefusedError("refused for postgresql://app:Zq8-sEcReT-pw-4711@db/app")


class StuckStage(Holder):
    name = "stuck_stage"
    stop_stages = (Stage("flush", 0.3),)

    async def flush(self) -> None:
        await anyio.sleep(30)  # Zq8-sEcReT-pw-4711 (the stage's stack shows this line)


def _linger(seconds: float) -> None:
    time.sleep(seconds)  # Zq8-sEcReT-pw-4711 (the leak report's stack shows this line)


class LeftThread(Holder):
    name = "left_thread"

    async def start(self) -> None:
        threading.Thread(target=_linger, args=(3.0,), name="lingerer", daemon=True).start()


class Unhealthy(Holder):
    name = "unhealthy"
    optional = True
    check_interval = 0.05
    grace_period = 0.0
    failure_threshold = 1000

    async def check(self) -> Health:
        return Health(False, reason="token Zq8-sEcReT-pw-4711 was refused")


class Timer(Service):
    """Ends the app (a required ``run()`` that returns) after ``SECRET_APP_SECONDS``."""

    async def run(self) -> None:
        await self.sleep(float(os.environ.get("SECRET_APP_SECONDS", "1.0")))


def services() -> list[Service]:
    return [FailingRun(), FailingStart(), StuckStage(), LeftThread(), Unhealthy()]


def app() -> Supervisor:
    return Supervisor([*services(), Timer()], shutdown_timeout=5.0, name="secret-app")
