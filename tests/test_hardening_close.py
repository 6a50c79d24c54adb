"""The close keeps its promises under hung work, cancellation and failing hooks (issue 11)."""

from __future__ import annotations

import sys
import threading
import time

import anyio
import pytest

from lifecycle import Service, Stage, StartupError, Supervisor, every
from lifecycle.events import Event
from lifecycle.supervisor import SupervisorState

pytestmark = pytest.mark.anyio


class Gate:
    """Releases the hung work at the end of a test, so no task outlives it for long."""

    def __init__(self) -> None:
        self.event = threading.Event()

    async def hang(self) -> None:
        """Ignore cancellation until released (at most 30 s)."""
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(30):
                while not self.event.is_set():
                    await anyio.sleep(0.02)

    def block(self) -> None:
        self.event.wait(30)


class HungRun(Service):
    """A run() that ignores cancellation."""

    def __init__(self, gate: Gate, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.gate = gate

    async def run(self) -> None:
        await self.gate.hang()


class HungStop(Service):
    """A stop stage that ignores cancellation, in the event loop."""

    stop_stages = (Stage("drain", 1.0), Stage("close", 1.0))

    def __init__(self, gate: Gate, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.gate = gate

    async def drain(self) -> None:
        await self.gate.hang()

    async def close(self) -> None:
        await self.gate.hang()


class BlockedStop(Service):
    """A stop stage blocked in a worker thread, and a spawned task that never ends."""

    def __init__(self, gate: Gate, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.gate = gate

    async def start(self) -> None:
        self.spawn(self.gate.hang, name="hung_task")

    async def stop(self) -> None:
        await anyio.to_thread.run_sync(self.gate.block)


async def close_hung(gate: Gate, services: list[Service], budget: float) -> Supervisor:
    """Start ``services``, close them, and check the close kept within the budget + 1 s."""
    sup = Supervisor(services, shutdown_timeout=budget, leak_check=False, log_report=False)
    try:
        async with sup:
            began = time.monotonic()
        elapsed = time.monotonic() - began
    finally:
        gate.event.set()
    assert elapsed < budget + 1.0, f"the close took {elapsed:.2f}s"
    return sup


async def test_a_chain_of_twenty_hung_services_closes_within_the_budget_plus_one_second() -> None:
    gate = Gate()
    services: list[Service] = [HungRun(gate, name=f"s{i}", depends_on=(f"s{i - 1}",) if i else (),
                                       stop_timeout=0.5) for i in range(20)]
    sup = await close_hung(gate, services, budget=2.0)
    tasks = {name: sup.report.stage(name, "tasks") for name in sup.report.shutdown}
    assert set(tasks) == {f"s{i}" for i in range(20)}, "every service is in the report"
    assert all(rec.outcome == "abandoned" for rec in tasks.values())
    assert "run" in (tasks["s0"].error or "")  # the stuck task is named
    assert "no time left" in (tasks["s0"].error or "")


async def test_a_hundred_mixed_hung_services_in_five_chains_close_within_the_budget() -> None:
    gate = Gate()
    kinds = (HungRun, HungStop, BlockedStop)
    services: list[Service] = []
    for chain in range(5):
        for i in range(20):
            kind = kinds[(chain + i) % 3]
            deps = (f"c{chain}s{i - 1}",) if i else ()
            extra = {} if kind is HungStop else {"stop_timeout": 0.5}
            services.append(kind(gate, name=f"c{chain}s{i}", depends_on=deps, **extra))
    sup = await close_hung(gate, services, budget=3.0)
    assert len(sup.report.shutdown) == 100
    last = sup.report.shutdown["c1s0"]  # the end of chain 1: nothing left of the budget
    assert [r.outcome for r in last.values()] == ["skipped", "skipped"]
    assert all(r.error == "no time left in the shutdown budget" for r in last.values())
    assert sup.report.exit_code == 4


class Ready(Service):
    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.stopped = False
        self.threads: list[threading.Thread] = []

    async def start(self) -> None:
        self.threads.append(self.spawn_thread(lambda stop: stop.wait(30), name="worker"))

    async def stop(self) -> None:
        self.stopped = True


class Broken(Service):
    async def start(self) -> None:
        raise RuntimeError("no database")


class Slow(Service):
    depends_on = ("ready",)

    async def start(self) -> None:
        await anyio.sleep(30)


async def test_a_failed_startup_does_not_wait_the_drain_delay() -> None:
    ready = Ready()
    sup = Supervisor([ready, Broken()], shutdown_timeout=10.0, drain_delay=5.0,
                     leak_check=False, log_report=False)
    began = time.monotonic()
    with pytest.raises(StartupError):
        async with sup:
            pass
    assert time.monotonic() - began < 3.0, "waited for a drain although nothing was ready"
    assert ready.stopped


async def test_async_with_cancelled_during_startup_rolls_back_what_started() -> None:
    original_start = threading.Thread.start
    ready = Ready()
    sup = Supervisor([ready, Slow(start_timeout=60.0)], log_report=False)
    with anyio.move_on_after(0.5):
        async with sup:
            pytest.fail("startup cannot have completed")
    assert ready.stopped, "the service that had started was never stopped"
    assert not ready.threads[0].is_alive()
    assert sup.state == SupervisorState.STOPPED
    assert threading.Thread.start is original_start, "the Thread.start hook is still installed"
    assert sup.report.startup["slow"].outcome == "cancelled"


async def test_serve_cancelled_during_startup_reports_the_starts_it_cut_short() -> None:
    class OptionalBroken(Broken):
        optional = True

    sup = Supervisor([Ready(), OptionalBroken(), Slow(start_timeout=60.0)], log_report=False,
                     leak_check=False)
    with anyio.move_on_after(0.5):
        await sup.serve(handle_signals=False)
    startup = sup.report.startup
    assert startup["optional_broken"].outcome == "error"
    assert startup["slow"].outcome == "cancelled"
    assert "cancelled during startup" in (startup["slow"].error or "")
    assert not sup.report.ok
    assert sup.report.exit_code == 1
    assert sup.report.to_dict()["startup_cancelled"] is True


async def test_a_raising_report_details_is_recorded_and_the_close_completes() -> None:
    class Detailed(Ready):
        def report_details(self) -> dict[str, object]:
            raise ValueError("counter exploded")

    original_start = threading.Thread.start
    events: list[Event] = []
    sup = Supervisor([Detailed(), Ready(name="other")], log_report=False)
    sup.subscribe(events.append)
    async with sup:
        pass
    assert sup.state == SupervisorState.STOPPED
    assert [e.kind for e in events][-1] == "Stopped"
    assert sup.report.leaks is not None, "the leak check did not run"
    assert threading.Thread.start is original_start, "the Thread.start hook is still installed"
    failure = sup.report.failures[0]
    assert (failure.service, failure.where) == ("detailed", "report_details()")
    assert "counter exploded" in failure.traceback
    assert not sup.report.ok


@pytest.mark.parametrize("exc", [SystemExit(3), KeyboardInterrupt()], ids=["SystemExit", "KeyboardInterrupt"])
@pytest.mark.parametrize("where", ["run", "loop", "spawned task"])
async def test_an_exit_request_inside_a_service_is_its_failure_and_the_close_still_runs(
        exc: BaseException, where: str) -> None:
    flushed = anyio.Event()

    class Exits(Service):
        async def start(self) -> None:
            if where == "spawned task":
                self.spawn(self.boom)

        async def run(self) -> None:
            if where == "run":
                await self.boom()
            await self.wait_shutdown()

        @every(0.05)
        async def tick(self) -> None:
            if where == "loop":
                await self.boom()

        async def boom(self) -> None:
            await anyio.sleep(0.05)
            raise exc

    class Flusher(Service):
        async def stop(self) -> None:
            await anyio.sleep(0.2)
            flushed.set()

    sup = Supervisor([Exits(), Flusher()], log_report=False, leak_check=False)
    report = await sup.serve(handle_signals=False)
    assert flushed.is_set(), "the other service's flush was cut short"
    failure = report.failures[0]
    assert failure.service == "exits"
    assert type(exc).__name__ in failure.traceback
    assert report.exit_code == 3
    assert report.restarts == [], "an exit request is not restarted"


async def test_a_start_interrupted_by_shutdown_is_not_blamed_on_its_deadline() -> None:
    gate = Gate()

    class Stuck(Service):
        async def start(self) -> None:
            await gate.hang()

    sup = Supervisor([Stuck(start_timeout=30.0)], log_report=False, leak_check=False)

    async def stop_soon() -> None:
        await anyio.sleep(0.5)
        sup.request_shutdown("signal SIGINT")

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(stop_soon)
            await sup.serve(handle_signals=False)
    finally:
        gate.event.set()
    rec = sup.report.startup["stuck"]
    assert rec.outcome == "abandoned"
    assert "30s deadline" not in (rec.error or "")
    assert "interrupted it after 0." in (rec.error or "")


if sys.platform == "win32":  # pragma: no cover
    pytestmark = pytest.mark.skip("POSIX only")
