"""Leak reports tell busy pool workers from idle ones and name the supervisor's tasks (issue 11)."""

from __future__ import annotations

import threading

import anyio
import pytest

from lifecycle import Service, Supervisor
from lifecycle.leaks import LeakCheck

pytestmark = pytest.mark.anyio


async def test_a_pool_worker_busy_in_a_blocking_call_is_reported_and_an_idle_one_is_not() -> None:
    await anyio.to_thread.run_sync(lambda: None)  # the pool's worker predates the check
    entered, release = threading.Event(), threading.Event()

    def blocking() -> None:
        entered.set()
        release.wait(30)

    check = LeakCheck(settle=0.1, tasks=False).begin()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, blocking)
            while not entered.is_set():
                await anyio.sleep(0.01)
            report = await check.finish()
            release.set()
    finally:
        release.set()
    assert len(report.threads) == 1, report.format()
    assert "blocking" in report.format()

    idle = LeakCheck(settle=0.1, tasks=False).begin()
    await anyio.to_thread.run_sync(lambda: None)  # the worker goes back to waiting for work
    assert (await idle.finish()).ok, idle.report.format()


async def test_tasks_the_supervisor_started_are_not_of_unknown_origin() -> None:
    release = anyio.Event()

    class Stubborn(Service):
        async def run(self) -> None:
            with anyio.CancelScope(shield=True):
                await release.wait()

    sup = Supervisor([Stubborn(stop_timeout=0.2)], log_report=False)
    async with anyio.create_task_group() as tg:
        async with sup:
            pass
        release.set()
        tg.cancel_scope.cancel()
    assert sup.report.leaks is not None and sup.report.leaks.tasks, "the stuck run() was not reported"
    text = sup.report.leaks.format()
    assert "origin unknown" not in text
    assert "started by the supervisor" in text and "for service `stubborn`" in text
