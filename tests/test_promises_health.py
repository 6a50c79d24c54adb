"""Promises of health monitoring and restart backoff, each pinned by a test that fails
when the promise is broken (see "Mutation testing" in docs/testing.md).

Simulated time: trio's MockClock jumps the clock whenever every task is waiting, so
minutes of checks and backoff run in a fraction of a second and every gap is exact.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import anyio
import pytest
from trio.testing import MockClock

from lifecycle import Health, RestartPolicy, Service, Supervisor
from lifecycle.events import Event
from tests.test_supervision import Table

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return "trio", {"clock": MockClock(autojump_threshold=0)}


async def corrupt_midway(table: Table, healthy_for: float,
                         then: float) -> tuple[Supervisor, list[str], bool]:
    """Serve ``table`` healthy for ``healthy_for`` s, then corrupt for ``then`` s; returns
    the supervisor, the event kinds and whether the table was healthy at the end."""
    events: list[Event] = []
    sup = Supervisor([table], leak_check=False)
    sup.subscribe(events.append)
    async with sup:
        await anyio.sleep(healthy_for)
        table.corrupt = True
        await anyio.sleep(then)
        healthy = sup.health()["services"]["table"]["healthy"] is True
    return sup, [e.kind for e in events], healthy


async def test_a_recovered_resource_gets_a_new_grace_period_before_it_is_judged() -> None:
    # Re-initialising takes 5 s, well inside the 10 s grace: one corruption, one recovery.
    table = Table(init_time=5.0, grace_period=10.0, cooldown=1.0)
    _, kinds, healthy = await corrupt_midway(table, 20, 100)
    assert healthy
    assert len(table.recoveries) == 1, table.recoveries
    assert kinds.count("HealthAlert") == 1


class Flapping(Service):
    """Fails every other check: never two failures in a row."""

    check_interval = 1.0
    failure_threshold = 2
    grace_period = 0.0
    cooldown = 1.0

    def __init__(self) -> None:
        super().__init__(name="flapping")
        self.checks = 0
        self.recoveries = 0

    async def check(self) -> Health:
        self.checks += 1
        return Health(self.checks % 2 == 0, "odd check")

    async def recover(self) -> None:
        self.recoveries += 1


async def test_only_consecutive_failures_trigger_a_recovery() -> None:
    svc = Flapping()
    async with Supervisor([svc], leak_check=False) as sup:
        await anyio.sleep(300)
        assert sup.health()["services"]["flapping"]["consecutive_failures"] <= 1
    assert svc.checks > 250
    assert svc.recoveries == 0


class FailsFirstRecovery(Table):
    async def recover(self) -> None:
        if not self.recoveries:
            self.recoveries.append(anyio.current_time())
            raise ConnectionError("the first repair failed")
        await super().recover()


async def test_a_failed_recover_keeps_the_service_monitored_and_recovered_later() -> None:
    table = FailsFirstRecovery(init_time=0.0, grace_period=2.0, cooldown=5.0, name="table")
    sup, kinds, healthy = await corrupt_midway(table, 5, 60)
    assert healthy
    assert len(table.recoveries) == 2  # the failed one, then one that worked
    assert [f.where for f in sup.report.failures] == ["recover"]
    assert kinds.count("HealthRestored") == 1


class Crashing(Service):
    """A ``run()`` that fails at once, every time; remembers when each attempt began."""

    def __init__(self, backoff: tuple[float, float]) -> None:
        super().__init__(name="crashing", restart=RestartPolicy(
            backoff=backoff, jitter=0.0, max_restarts=1000, window=3600.0))
        self.attempts: list[float] = []

    async def run(self) -> None:
        self.attempts.append(anyio.current_time())
        raise ConnectionError("down")


async def test_restarts_wait_the_first_delay_then_double_up_to_the_cap() -> None:
    svc = Crashing(backoff=(2.0, 8.0))
    async with Supervisor([svc], leak_check=False):
        await anyio.sleep(100)
    gaps = [round(b - a, 6) for a, b in pairwise(svc.attempts)]
    assert gaps[:5] == [2.0, 4.0, 8.0, 8.0, 8.0]
    assert max(gaps) == 8.0


async def test_the_recovery_comes_with_the_threshold_th_consecutive_failure() -> None:
    table = Table(init_time=0.0, grace_period=1.0, cooldown=30.0)
    await corrupt_midway(table, 20, 20)
    [recovered_at] = table.recoveries
    failed = [at for at, ok in table.checks if not ok and at <= recovered_at]
    assert len(failed) == table.failure_threshold == 3
