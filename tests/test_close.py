"""The cascading close: order, per-stage deadlines, cancel then abandon, the whole budget."""

from __future__ import annotations

import json
import sys
import threading
import time

import anyio
import pytest

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup

from lifecycle import Service, Stage, Supervisor, every
from lifecycle.events import Event, StageFinished

pytestmark = pytest.mark.anyio


class Staged(Service):
    stop_stages = (Stage("drain", 0.5), Stage("flush", 0.5), Stage("close", 0.5))

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.ran: list[str] = []

    async def drain(self) -> None:
        self.ran.append("drain")

    async def flush(self) -> None:
        self.ran.append("flush")
        await anyio.sleep_forever()

    async def close(self) -> None:
        self.ran.append("close")


async def test_hanging_stage_times_out_with_stack_and_next_stage_runs() -> None:
    svc = Staged()
    overruns: list[Event] = []
    sup = Supervisor([svc], leak_check=False)
    sup.subscribe(lambda e: overruns.append(e) if isinstance(e, StageFinished) else None)
    async with sup:
        pass
    assert svc.ran == ["drain", "flush", "close"]
    flush = sup.report.stage("staged", "flush")
    assert flush.outcome == "timeout"
    assert 0.5 <= flush.elapsed < 2.0
    assert "in flush" in (flush.stack or "") and "sleep_forever" in (flush.stack or "")
    assert sup.report.stage("staged", "close").outcome == "ok"
    assert sup.report.exit_code == 4
    assert "staged.flush: timeout" in sup.report.format()
    assert [e.stage for e in overruns if isinstance(e, StageFinished)] == ["drain", "flush", "close"]
    json.dumps(sup.report.to_dict())


class Stubborn(Service):
    """A stop stage that ignores cancellation: a blocking call in a worker thread."""

    stop_timeout = 0.5

    def __init__(self, release: threading.Event, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.release = release

    async def stop(self) -> None:
        await anyio.to_thread.run_sync(self.release.wait, 30)


async def test_stage_that_ignores_cancellation_is_abandoned_within_budget() -> None:
    release = threading.Event()
    try:
        sup = Supervisor([Stubborn(release)], shutdown_timeout=2.0, leak_check=False)
        began = anyio.current_time()
        async with sup:
            pass
        assert anyio.current_time() - began < 2.0 + 1.0
        stop = sup.report.stage("stubborn", "stop")
        assert stop.outcome == "abandoned"
        assert "in stop" in (stop.stack or "")
    finally:
        release.set()


async def test_serve_returns_within_budget_plus_one_second_whatever_services_do() -> None:
    release = threading.Event()

    class Forever(Service):
        stop_stages = (Stage("a", 1.0), Stage("b", 1.0))

        async def run(self) -> None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(release.wait, 30)

        async def a(self) -> None:
            await anyio.sleep_forever()

        async def b(self) -> None:
            await anyio.to_thread.run_sync(release.wait, 30)

    class Dependent(Forever):
        depends_on = ("forever",)

    try:
        sup = Supervisor([Forever(), Dependent()], shutdown_timeout=2.5, leak_check=False)
        began = anyio.current_time()
        async with anyio.create_task_group() as tg:
            tg.start_soon(sup.serve)
            await _wait_running(sup)
            sup.request_shutdown("test")
        elapsed = anyio.current_time() - began
        assert elapsed < 2.5 + 1.0, sup.report.format()
        outcomes = {(r.service, r.stage): r.outcome for r in sup.report.stages()}
        assert outcomes[("dependent", "tasks")] == "abandoned"
        assert "skipped" in outcomes.values()  # the budget ran out before the last stages
        assert sup.report.exit_code == 4
    finally:
        release.set()


async def _wait_running(sup: Supervisor) -> None:
    started = anyio.Event()
    sup.subscribe(lambda e: started.set() if e.kind == "AllStarted" else None)
    with anyio.fail_after(10):
        await started.wait()


class Ticker(Service):
    stop_timeout = 5.0

    @every(3600)
    async def tick(self) -> None:
        raise AssertionError("never reached")


async def test_a_thousand_hourly_loops_shut_down_at_once() -> None:
    sup = Supervisor([Ticker(name=f"t{i}") for i in range(1000)], leak_check=False)
    async with sup:
        began = anyio.current_time()
    # `async with` exit ran the whole close; measure from the request to the report
    # Loops that did not wake would be cancelled at their 5 s tasks deadline; the bound stays
    # well under that on a loaded 2-core machine (the speed goal is in benchmarks/shutdown.py).
    elapsed = sup.report.shutdown_elapsed
    assert elapsed < 4.0, f"1,000 idle loops took {elapsed:.2f} s to stop"
    assert anyio.current_time() - began < 8.0
    assert sup.report.ok, sup.report.format()


async def test_loops_and_run_wake_on_shutdown_not_after_their_interval() -> None:
    class Worker(Service):
        def __init__(self) -> None:
            super().__init__()
            self.slept: list[bool] = []
            self.ticks_seen = 0

        async def run(self) -> None:
            self.slept.append(await self.sleep(3600))

        @every(0.01, immediate=True)
        async def tick(self) -> None:
            self.ticks_seen += 1

    worker = Worker()
    async with Supervisor([worker], leak_check=False) as sup:
        while worker.ticks_seen < 3:
            await anyio.sleep(0.01)
    assert worker.slept == [False]
    assert sup.report.stage("worker", "tasks").outcome == "ok"
    assert sup.report.stage("worker", "tasks").elapsed < 1.0


async def test_independent_services_stop_concurrently() -> None:
    class SlowStop(Service):
        async def stop(self) -> None:
            await anyio.sleep(0.3)

    sup = Supervisor([SlowStop(name=f"s{i}") for i in range(5)], leak_check=False)
    async with sup:
        pass
    assert sup.report.shutdown_elapsed < 1.2
    assert sup.report.ok


async def test_run_that_ignores_shutdown_is_cancelled_after_first_stage() -> None:
    class Deaf(Service):
        stop_timeout = 0.3

        async def run(self) -> None:
            await anyio.sleep_forever()

    async with Supervisor([Deaf()], leak_check=False) as sup:
        pass
    tasks = sup.report.stage("deaf", "tasks")
    assert tasks.outcome == "cancelled"
    assert "run" in (tasks.error or "") and "sleep_forever" in (tasks.stack or "")
    assert sup.report.exit_code == 4


async def test_errors_in_stages_and_tasks_are_never_lost(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(Service):
        async def start(self) -> None:
            self.spawn(self.explode, name="exploder")

        async def explode(self) -> None:
            raise KeyError("lost?")

        async def stop(self) -> None:
            raise ExceptionGroup("one", [ValueError("bad stop")])

    async with Supervisor([Broken()], leak_check=False) as sup:
        pass
    assert sup.report.stage("broken", "stop").error == "ValueError: bad stop"  # not wrapped
    assert [f.where for f in sup.report.failures] == ["exploder"]
    assert "KeyError" in sup.report.failures[0].traceback
    assert "lost?" in caplog.text


async def test_spawn_thread_is_joined_or_reported() -> None:
    release = threading.Event()

    class Threads(Service):
        stop_timeout = 0.3

        async def start(self) -> None:
            self.polite = self.spawn_thread(lambda stop: stop.wait(30), name="polite")
            self.deaf = self.spawn_thread(lambda stop: release.wait(30), name="deaf")

    svc = Threads()
    try:
        async with Supervisor([svc], leak_check=False) as sup:
            assert svc.polite.name == "threads.polite"
        threads = sup.report.stage("threads", "threads")
        assert threads.outcome == "abandoned"
        assert "threads.deaf" in (threads.error or "") and "polite" not in (threads.error or "")
        assert not svc.polite.is_alive()
    finally:
        release.set()
        svc.deaf.join(5)


async def test_request_shutdown_from_a_thread() -> None:
    class Quitter(Service):
        async def run(self) -> None:
            await anyio.to_thread.run_sync(lambda: (time.sleep(0.01), self.request_shutdown("done")))
            await self.wait_shutdown()

    sup = Supervisor([Quitter()], leak_check=False)
    with anyio.fail_after(10):
        report = await sup.serve(handle_signals=False)
    assert report.reason == "quitter: done"
    assert report.ok, report.format()
