"""Promises of the start and the close that no other test pinned: each test fails when the
promise is broken (see "Mutation testing" in docs/testing.md). Both backends, real time.
"""

from __future__ import annotations

import threading
import time
from functools import partial

import anyio
import pytest

from lifecycle import Fallback, LeakCheck, RestartPolicy, Service, Supervisor

pytestmark = pytest.mark.anyio


async def test_health_checks_end_before_the_first_stop_stage_runs() -> None:
    class Checked(Service):
        check_interval = 0.01
        check_timeout = 30.0
        grace_period = 0.0

        def __init__(self) -> None:
            super().__init__()
            self.checking = anyio.Event()
            self.in_check = False
            self.check_running_at_stop: bool | None = None

        async def check(self) -> bool:
            self.in_check = True
            self.checking.set()
            try:
                await anyio.sleep(30)
            finally:
                self.in_check = False
            return True

        async def stop(self) -> None:
            self.check_running_at_stop = self.in_check

    svc = Checked()
    with anyio.fail_after(20):
        async with Supervisor([svc], leak_check=False):
            await svc.checking.wait()
    assert svc.check_running_at_stop is False


async def test_a_stage_whose_budget_is_spent_is_skipped_not_begun() -> None:
    class Base(Service):
        stop_timeout = 1.0

        def __init__(self) -> None:
            super().__init__()
            self.stop_began = False

        async def stop(self) -> None:
            self.stop_began = True

    class Hanging(Service):
        depends_on = ("base",)
        stop_timeout = 1.0

        async def stop(self) -> None:  # stops first and spends the whole budget
            await anyio.sleep(30)

    base = Base()
    with anyio.fail_after(20):
        async with Supervisor([base, Hanging()], shutdown_timeout=1.0, leak_check=False) as sup:
            pass
    stop = sup.report.shutdown["base"]["stop"]
    assert stop.outcome == "skipped" and "budget" in (stop.error or ""), stop.error
    assert not base.stop_began


async def test_the_leak_check_settles_for_at_most_a_second_at_close() -> None:
    release = threading.Event()

    class Leaky(Service):
        async def start(self) -> None:
            threading.Thread(target=release.wait, args=(60,), name="forgotten").start()

    sup = Supervisor([Leaky()], leak_check=LeakCheck(settle=30.0))
    try:
        began = time.monotonic()
        with anyio.fail_after(40):
            async with sup:
                pass
        elapsed = time.monotonic() - began
    finally:
        release.set()
    assert elapsed < 10.0, f"the close waited {elapsed:.1f}s for a leaked thread"
    leaks = sup.report.leaks
    assert leaks is not None and [t.name for t in leaks.threads] == ["forgotten"]
    assert leaks.settle <= 1.0


async def test_cancelling_serve_during_a_start_cancels_that_start() -> None:
    class SlowStart(Service):
        start_timeout = 30.0

        def __init__(self) -> None:
            super().__init__()
            self.began, self.ended = anyio.Event(), anyio.Event()

        async def start(self) -> None:
            self.began.set()
            try:
                await anyio.sleep(30)
            finally:
                self.ended.set()

    svc = SlowStart()
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(Supervisor([svc], leak_check=False).serve, handle_signals=False))
        with anyio.fail_after(10):
            await svc.began.wait()
        tg.cancel_scope.cancel()
    with anyio.fail_after(5):  # not left running, orphaned, for its 30 s
        await svc.ended.wait()


async def test_tasks_of_a_failed_fallback_candidate_end_before_the_next_candidate_starts() -> None:
    class Primary(Service):
        def __init__(self) -> None:
            super().__init__(name="primary")
            self.worker_up, self.worker_down = anyio.Event(), anyio.Event()

        async def start(self) -> None:
            self.spawn(self.keepalive)
            await self.worker_up.wait()
            raise ConnectionError("primary refused")

        async def keepalive(self) -> None:
            self.worker_up.set()
            try:
                await anyio.sleep_forever()
            finally:
                self.worker_down.set()

    class Replica(Service):
        def __init__(self) -> None:
            super().__init__(name="replica")
            self.primary_worker_alive: bool | None = None

        async def start(self) -> None:
            self.primary_worker_alive = not primary.worker_down.is_set()

    primary, replica = Primary(), Replica()
    with anyio.fail_after(20):
        async with Supervisor([Fallback("db", primary, replica)], leak_check=False) as sup:
            assert sup.resolve("db") is replica
    assert replica.primary_worker_alive is False


async def test_restart_delays_begin_at_the_first_backoff_and_never_exceed_the_cap() -> None:
    class Crashing(Service):
        restart = RestartPolicy(backoff=(0.01, 0.04), jitter=0.0, max_restarts=6, window=60.0)

        async def run(self) -> None:
            raise ConnectionError("down")

    with anyio.fail_after(20):
        report = await Supervisor([Crashing()], leak_check=False).serve(handle_signals=False)
    delays = [r.delay for r in report.restarts]
    assert delays == [0.01, 0.02, 0.04, 0.04, 0.04, 0.04]
    assert report.exit_code == 3  # the seventh failure spent the budget


async def test_a_stage_is_cut_at_what_is_left_of_the_shutdown_budget() -> None:
    class Hanging(Service):
        stop_timeout = 3.0

        async def stop(self) -> None:
            await anyio.sleep(30)

    base = Hanging(name="base")
    top = Hanging(name="top", depends_on=("base",))  # stops first: 1 s of 4 s is left after it
    with anyio.fail_after(20):
        async with Supervisor([base, top], shutdown_timeout=4.0, leak_check=False) as sup:
            pass
    stop = sup.report.shutdown["base"]["stop"]
    assert stop.outcome == "timeout" and stop.elapsed < 2.0, (stop.elapsed, stop.error)
