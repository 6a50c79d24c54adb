"""The supervisor's last close step: a leak check whose report names the service and site."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from lifecycle import Service, Supervisor

pytestmark = pytest.mark.anyio


async def test_thread_started_in_start_is_reported_with_service_and_site() -> None:
    release = threading.Event()

    class Leaky(Service):
        async def start(self) -> None:
            threading.Thread(target=release.wait, name="forgotten", daemon=True).start()

    try:
        async with Supervisor([Leaky()]) as sup:
            pass
        leaks = sup.report.leaks
        assert leaks is not None and not leaks.ok
        [thread] = [t for t in leaks.threads if t.name == "forgotten"]
        assert thread.owner == "leaky"
        assert "test_supervisor_leaks.py" in (thread.created_at or "")
        assert sup.report.exit_code == 5
        text = sup.report.format()
        assert "forgotten" in text and "leaky" in text
    finally:
        release.set()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # aiosqlite and raw asyncio tasks


async def test_unclosed_aiosqlite_connection_in_a_service(tmp_path: Path) -> None:
    class Careless(Service):
        async def start(self) -> None:
            self.conn = await aiosqlite.connect(tmp_path / "x.db")

    svc = Careless()
    async with Supervisor([svc]) as sup:
        pass
    try:
        leaks = sup.report.leaks
        assert leaks is not None
        owners = {t.owner for t in leaks.threads}
        assert owners == {"careless"}, leaks.format()
        assert "_connection_worker_thread" in leaks.format()
    finally:
        await svc.conn.close()


async def test_orphaned_task_of_a_service() -> None:
    holder: dict[str, Any] = {}

    class Orphaner(Service):
        async def start(self) -> None:
            holder["task"] = asyncio.get_running_loop().create_task(asyncio.sleep(3600), name="orphan")

    async with Supervisor([Orphaner()]) as sup:
        pass
    try:
        leaks = sup.report.leaks
        assert leaks is not None
        [task] = [t for t in leaks.tasks if t.name == "orphan"]
        assert task.owner == "orphaner"
    finally:
        holder["task"].cancel()


async def test_a_clean_app_reports_no_leaks_and_waits_for_nothing() -> None:
    class Tidy(Service):
        async def start(self) -> None:
            self.worker = self.spawn_thread(lambda stop: stop.wait(30), name="worker")

    async with Supervisor([Tidy()]) as sup:
        pass
    assert sup.report.leaks is not None and sup.report.leaks.ok
    assert sup.report.ok, sup.report.format()
    assert sup.report.shutdown_elapsed < 0.5
