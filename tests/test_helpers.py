"""Helpers for code inside a service: sleep, ticks, @every, spawn, restarts, events."""

from __future__ import annotations

import json

import anyio
import pytest

from lifecycle import RestartPolicy, Service, ServiceState, Supervisor, every
from lifecycle._stoptoken import Stop
from lifecycle.events import Event

pytestmark = pytest.mark.anyio


async def test_every_stop_ends_only_that_loop() -> None:
    class Counter(Service):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0
            self.done = anyio.Event()

        @every(0.001, immediate=True)
        async def count(self) -> object:
            self.calls += 1
            if self.calls == 3:
                self.done.set()
                return every.STOP
            return None

    svc = Counter()
    async with Supervisor([svc], leak_check=False) as sup:
        with anyio.fail_after(10):
            await svc.done.wait()
        await anyio.sleep(0.05)  # would-be extra calls happen here if STOP were ignored
        assert svc.state == ServiceState.RUNNING
    assert svc.calls == 3
    assert sup.report.ok, sup.report.format()


async def test_ticks_are_fixed_rate_and_skip_missed_slots() -> None:
    class Slowpoke(Service):
        def __init__(self) -> None:
            super().__init__()
            self.at: list[float] = []
            self.done = anyio.Event()

        async def run(self) -> None:
            async for n in self.ticks(0.05):
                self.at.append(anyio.current_time())
                if n == 0:
                    await anyio.sleep(0.12)  # overruns two slots
                if len(self.at) == 3:
                    self.done.set()

    svc = Slowpoke()
    async with Supervisor([svc], leak_check=False):
        with anyio.fail_after(10):
            await svc.done.wait()
    gaps = [b - a for a, b in zip(svc.at, svc.at[1:], strict=False)]
    assert gaps[0] >= 0.12  # the next tick waited for the body, and was not bunched
    # ...and the one after stays on the 0.05 s grid (slots 0.05 and 0.10 skipped, not fired
    # late back to back): measured from the first tick, so a late wake-up under load of the
    # second one does not count against it
    assert svc.at[2] - svc.at[0] >= 0.19


async def test_sleep_and_ticks_before_and_after_shutdown() -> None:
    svc = Service(name="plain")
    assert await svc.sleep(0.001) is True
    svc._stop_token.set(Stop.FOR_GOOD)  # what the close does to a service's stop token
    assert svc.shutting_down
    assert await svc.sleep(3600) is False
    assert [n async for n in svc.ticks(3600)] == []


async def test_helpers_that_need_a_supervisor_say_so() -> None:
    svc = Service(name="lonely")
    with pytest.raises(RuntimeError, match="spawn\\(\\) of service 'lonely' needs a running Supervisor"):
        svc.spawn(anyio.sleep, 1)


class Crasher(Service):
    def __init__(self, policy: RestartPolicy, **kw: object) -> None:
        super().__init__(restart=policy, **kw)  # type: ignore[arg-type]
        self.runs: list[float] = []

    async def run(self) -> None:
        self.runs.append(anyio.current_time())
        raise RuntimeError(f"crash #{len(self.runs)}")


async def test_crashing_run_restarts_with_growing_delays_then_shuts_down() -> None:
    policy = RestartPolicy(backoff=(0.02, 1.0), jitter=0.0, max_restarts=3, window=60.0)
    svc = Crasher(policy)
    events: list[Event] = []
    sup = Supervisor([svc], leak_check=False)
    sup.subscribe(events.append)
    with anyio.fail_after(20):
        report = await sup.serve(handle_signals=False)
    assert len(svc.runs) == 4  # the first run and three restarts
    gaps = [b - a for a, b in zip(svc.runs, svc.runs[1:], strict=False)]
    assert gaps[0] >= 0.02 and gaps[1] >= 0.04 and gaps[2] >= 0.08
    assert gaps[2] > gaps[0]
    assert report.exit_code == 3
    assert "more than 3 restarts" in (report.reason or "")
    assert [e.attempt for e in events if e.kind == "ServiceRestarting"] == [1, 2, 3]  # type: ignore[attr-defined]
    assert "crash #4" in report.failures[-1].error
    json.dumps([e.to_dict() for e in events])


async def test_give_up_leaves_the_service_failed_and_the_rest_running() -> None:
    policy = RestartPolicy(backoff=(0.01, 0.01), max_restarts=1, then="give_up")
    svc = Crasher(policy)
    async with Supervisor([svc, Service(name="other")], leak_check=False) as sup:
        with anyio.fail_after(10):
            while svc.state != ServiceState.FAILED:
                await anyio.sleep(0.01)
        assert not sup.shutdown_requested
    assert len(svc.runs) == 2
    assert sup.report.exit_code == 0 and not sup.report.ok


async def test_required_run_returning_ends_the_app_cleanly() -> None:
    class Batch(Service):
        async def run(self) -> None:
            await anyio.sleep(0.01)

    with anyio.fail_after(10):
        report = await Supervisor([Batch()], leak_check=False).serve(handle_signals=False)
    assert report.reason == "run() of 'batch' returned"
    assert report.exit_code == 0 and report.ok


async def test_never_policy_failure_of_required_run_exits_3() -> None:
    svc = Crasher(RestartPolicy(on="never"))
    with anyio.fail_after(10):
        report = await Supervisor([svc], leak_check=False).serve(handle_signals=False)
    assert len(svc.runs) == 1 and report.exit_code == 3
    assert report.failures[0].traceback.count("RuntimeError: crash #1") == 1


async def test_a_supervisor_runs_once() -> None:
    sup = Supervisor([Service(name="x")], leak_check=False)
    async with sup:
        pass
    with pytest.raises(RuntimeError, match="already used"):
        async with sup:
            pass


async def test_shutdown_requested_before_start_starts_nothing() -> None:
    svc = Service(name="x")
    sup = Supervisor([svc], leak_check=False)
    sup.request_shutdown("changed my mind")
    report = await sup.serve(handle_signals=False)
    assert report.startup["x"].outcome == "skipped"
    assert svc.state == ServiceState.NEW
    assert report.exit_code == 0
