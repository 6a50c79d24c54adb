"""``tasks_timeout``: run(), loops and spawned tasks get their own deadline at close."""

from __future__ import annotations

import anyio
import pytest

from lifecycle import ConfigError, Service, Stage, Supervisor, every
from lifecycle.plan import plan_of

pytestmark = pytest.mark.anyio


class Cascade(Service):
    """The S3 shape: tasks 2 s, flush 5 s, close 3 s, without a do-nothing stage."""

    tasks_timeout = 2.0
    stop_stages = (Stage("flush", 5.0), Stage("close", 3.0))

    def __init__(self, **kw: float) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.flushed = False

    async def run(self) -> None:
        await anyio.sleep_forever()  # ignores shutdown: cut at the tasks deadline

    async def flush(self) -> None:
        self.flushed = True

    async def close(self) -> None:
        pass


async def test_tasks_are_cut_at_their_own_deadline_not_the_first_stages() -> None:
    svc = Cascade(tasks_timeout=0.2)
    async with Supervisor([svc], leak_check=False) as sup:
        pass
    tasks = sup.report.stage("cascade", "tasks")
    assert tasks.deadline == 0.2
    assert tasks.outcome == "cancelled"
    assert 0.15 < tasks.elapsed < 2.0  # 0.2 s and the cancellation, never flush's 5 s
    assert svc.flushed and sup.report.stage("cascade", "flush").outcome == "ok"


async def test_unset_tasks_timeout_keeps_the_first_stages_deadline() -> None:
    class Plain(Service):
        stop_timeout = 0.3

        async def run(self) -> None:
            await anyio.sleep_forever()

    async with Supervisor([Plain()], leak_check=False) as sup:
        pass
    assert sup.report.stage("plain", "tasks").deadline == 0.3


def test_check_shows_the_tasks_row_with_its_own_deadline() -> None:
    plan = plan_of(Supervisor([Cascade()], shutdown_timeout=12.0))
    assert plan.stop[0].stages == [("tasks", 2.0), ("flush", 5.0), ("close", 3.0)]
    assert plan.worst_close == 10.0
    assert "tasks 2s, flush 5s, close 3s" in plan.format()


def test_tasks_timeout_counts_toward_the_budget_and_is_validated() -> None:
    Supervisor([Cascade()], shutdown_timeout=10.0)  # 2 + 5 + 3 fits exactly
    with pytest.raises(ConfigError, match=r"'cascade'.*10.5 s.*shutdown_timeout=10 s"):
        Supervisor([Cascade(tasks_timeout=2.5)], shutdown_timeout=10.0)
    for bad in (0, -1.0, float("inf"), "2"):
        with pytest.raises(ConfigError, match="tasks_timeout"):
            Supervisor([Cascade(tasks_timeout=bad)])  # type: ignore[arg-type]


def test_a_service_without_run_or_loops_but_with_tasks_timeout_shows_it() -> None:
    class Spawner(Service):
        tasks_timeout = 1.0

        @every(60)
        async def tick(self) -> None:
            pass

    plan = plan_of(Supervisor([Spawner()]))
    assert plan.stop[0].stages[0] == ("tasks", 1.0)
