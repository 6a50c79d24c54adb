"""Restarts and health: grace, cooldown, thresholds, one alert per incident, no loops.

Simulated time: trio's MockClock jumps the clock whenever every task is waiting, so five
minutes of checks every second run in a fraction of a second of test time.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from trio.testing import MockClock

from lifecycle import Health, RestartPolicy, Service, ServiceState, Supervisor
from lifecycle.events import Event

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return "trio", {"clock": MockClock(autojump_threshold=0)}


class Table(Service):
    """A resource that looks corrupt while new: the guardian incident."""

    check_interval = 1.0
    check_timeout = 0.5
    failure_threshold = 3
    grace_period = 10.0
    cooldown = 30.0

    def __init__(self, init_time: float, **kw: Any) -> None:
        super().__init__(**kw)
        self.init_time = init_time
        self.created_at = 0.0
        self.corrupt = False
        self.checks: list[tuple[float, bool]] = []
        self.recoveries: list[float] = []

    async def start(self) -> None:
        self.created_at = anyio.current_time()

    async def check(self) -> Health:
        now = anyio.current_time()
        ok = not self.corrupt and now - self.created_at >= self.init_time
        self.checks.append((now, ok))
        return Health(ok, "" if ok else ("corrupt" if self.corrupt else "not initialised"))

    async def recover(self) -> None:
        self.recoveries.append(anyio.current_time())
        self.corrupt = False
        self.created_at = anyio.current_time()  # recreated: new again


async def _run_for(sup: Supervisor, seconds: float, events: list[Event]) -> None:
    sup.subscribe(events.append)
    async with sup:
        await anyio.sleep(seconds)


async def test_a_new_resource_inside_its_grace_period_is_never_recovered() -> None:
    table = Table(init_time=5.0)
    events: list[Event] = []
    sup = Supervisor([table], leak_check=False)
    await _run_for(sup, 300.0, events)
    assert len(table.checks) > 250
    assert table.recoveries == []  # "not initialised" fell inside the grace period
    assert not [e for e in events if e.kind == "HealthAlert"]


async def test_flapping_check_respects_threshold_grace_cooldown_and_window() -> None:
    policy = RestartPolicy(max_restarts=4, window=60.0, then="shutdown")
    table = Table(init_time=25.0, restart=policy)  # re-initialising outlasts the grace
    table.corrupt = True
    events: list[Event] = []
    sup = Supervisor([table], leak_check=False)
    began = anyio.current_time()
    await _run_for(sup, 300.0, events)
    rec = [t - began for t in table.recoveries]
    assert rec, "the corrupt table was never recovered"
    for t in rec:  # never more than max_restarts recoveries in any window
        assert sum(1 for u in rec if t <= u < t + policy.window) <= policy.max_restarts
    for t in rec:  # no check during a cooldown
        assert not [c for c, _ in table.checks if t < c - began < t + table.cooldown]
    # each recovery came after `failure_threshold` failures counted after the grace period
    grace_end = 0.0 + table.grace_period
    for t in rec:
        counted = [c for c, ok in table.checks if grace_end <= c - began <= t and not ok]
        assert len(counted) >= table.failure_threshold
        grace_end = t + table.grace_period
    # one incident, one alert: the table never became healthy, whatever the recoveries
    assert [e.kind for e in events].count("HealthAlert") == 1
    assert sup.report.restarts and all(r.where == "health" for r in sup.report.restarts)


async def test_recovery_budget_exhausted_escalates_to_shutdown() -> None:
    policy = RestartPolicy(max_restarts=2, window=3600.0, then="shutdown")
    table = Table(init_time=1e9, restart=policy)  # never healthy
    events: list[Event] = []
    sup = Supervisor([table], leak_check=False)
    sup.subscribe(events.append)
    with anyio.fail_after(7200):
        report = await sup.serve(handle_signals=False)
    assert len(table.recoveries) == 2
    assert report.exit_code == 3
    assert "more than 2 recoveries" in (report.reason or "")
    assert [e.kind for e in events].count("HealthAlert") == 1


async def test_give_up_stops_checking_and_leaves_the_service_failed() -> None:
    policy = RestartPolicy(max_restarts=1, window=3600.0, then="give_up")
    table = Table(init_time=1e9, restart=policy)
    async with Supervisor([table, Service(name="other")], leak_check=False) as sup:
        await anyio.sleep(600)
        assert table.state == ServiceState.FAILED
        assert not sup.shutdown_requested
        checks = len(table.checks)
        await anyio.sleep(600)
        assert len(table.checks) == checks
    assert len(table.recoveries) == 1


async def test_each_incident_raises_one_alert() -> None:
    table = Table(init_time=0.0, grace_period=0.001)
    events: list[Event] = []
    sup = Supervisor([table], leak_check=False)
    sup.subscribe(events.append)
    async with sup:
        for _ in range(3):  # three separate incidents
            await anyio.sleep(20)
            table.corrupt = True
            await anyio.sleep(60)
    kinds = [e.kind for e in events]
    assert kinds.count("HealthAlert") == 3
    assert kinds.count("HealthRestored") == 3
    assert len(table.recoveries) == 3  # one recovery each: corrupt is cleared by recover()


async def test_readiness_liveness_and_startup_are_separate() -> None:
    table = Table(init_time=0.0, grace_period=0.001)
    sup = Supervisor([table], leak_check=False)
    assert not sup.started and not sup.ready and not sup.alive
    async with sup:
        assert sup.started and sup.ready and sup.alive
        table.corrupt = True
        await anyio.sleep(1.5)  # one failed check: an incident, not yet a recovery
        assert sup.alive and sup.started and not sup.ready
        assert sup.health()["services"]["table"]["healthy"] is False
        await anyio.sleep(60)
        assert sup.ready
        sup.request_shutdown("test")
        assert not sup.ready and sup.alive
    assert not sup.alive and sup.started


async def test_restart_without_recover_stops_and_starts_the_service() -> None:
    class Flaky(Service):
        check_interval = 1.0
        failure_threshold = 2
        grace_period = 0.001
        cooldown = 5.0

        def __init__(self) -> None:
            super().__init__()
            self.starts = 0
            self.stops = 0
            self.broken = False

        async def start(self) -> None:
            self.starts += 1
            self.broken = False

        async def stop(self) -> None:
            self.stops += 1

        async def check(self) -> bool:
            return not self.broken

    svc = Flaky()
    async with Supervisor([svc], leak_check=False) as sup:
        await anyio.sleep(3)
        svc.broken = True
        await anyio.sleep(10)
        assert svc.state == ServiceState.RUNNING
    assert (svc.starts, svc.stops) == (2, 2)
    assert [r.reason.split(":")[0] for r in sup.report.restarts] == ["restart"]
