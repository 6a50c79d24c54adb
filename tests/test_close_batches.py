"""Services that have nothing to wait for start and close in one pass, without a task each;
the others keep their own task, deadlines and reports (docs/architecture.md, "The close")."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from lifecycle import Service, Supervisor, every
from lifecycle._backend import current
from lifecycle.events import Event, ServiceStopped
from lifecycle.outcome import Outcome

pytestmark = pytest.mark.anyio

N = 200


class Idle(Service):
    @every(3600)
    async def tick(self) -> None:
        pass


class TaskCount:
    """Counts the tasks the event loop creates while installed (asyncio and trio alike)."""

    def __init__(self) -> None:
        self.created = 0
        backend = current()
        assert backend is not None
        self._remove = backend.install_task_hook(self._on_spawn)

    def _on_spawn(self, task: Any, coro: Any, context: Any) -> None:
        self.created += 1

    def remove(self) -> None:
        self._remove()


async def test_services_that_wait_for_nothing_start_and_close_without_a_task_each() -> None:
    hookless = [Service(name=f"plain{i}") for i in range(N)]
    loops = [Idle(name=f"idle{i}") for i in range(N)]
    sup = Supervisor([*hookless, *loops], log_report=False, leak_check=False)
    starting = TaskCount()
    try:
        await sup.__aenter__()
    finally:
        starting.remove()
    closing = TaskCount()
    try:
        await sup.__aexit__(None, None, None)
    finally:
        closing.remove()
    assert sup.report.ok, sup.report.format()
    assert {s.name for s in loops} <= {n for n, st in sup.report.shutdown.items() if "tasks" in st}
    # one task per loop (the loops themselves), a constant few for the supervisor: none per
    # hook-less start, none per close
    assert starting.created < N + 10, starting.created
    assert closing.created < 10, closing.created


@pytest.mark.parametrize("declared", ["dependencies first", "dependents first"])
async def test_a_chain_of_services_that_stop_at_once_stops_dependents_first(declared: str) -> None:
    chain = [Service(name="a"), Idle(name="b", depends_on="a"), Service(name="c", depends_on="b")]
    if declared == "dependents first":  # the close visits a before c: a must wait for b, c
        chain.reverse()
    sup = Supervisor(chain, log_report=False, leak_check=False)
    stopped: list[str] = []

    def on_event(event: Event) -> None:
        if isinstance(event, ServiceStopped):
            stopped.append(event.service or "")

    sup.subscribe(on_event)
    async with sup:
        pass
    assert stopped == ["c", "b", "a"]
    assert sup.report.ok, sup.report.format()


async def test_a_stubborn_task_among_idle_services_is_abandoned_named_and_in_time() -> None:
    release = anyio.Event()

    class Stubborn(Service):
        async def run(self) -> None:
            with anyio.CancelScope(shield=True):
                await release.wait()

    class Dependent(Idle):
        depends_on = ("stubborn",)

    services: list[Service] = [Stubborn(tasks_timeout=0.2), Dependent(name="dependent"),
                               *(Idle(name=f"idle{i}") for i in range(50))]
    sup = Supervisor(services, log_report=False, leak_check=False, shutdown_timeout=5)
    async with sup:
        began = anyio.current_time()
    took = anyio.current_time() - began
    release.set()
    tasks = sup.report.shutdown["stubborn"]["tasks"]
    assert tasks.outcome == Outcome.ABANDONED, sup.report.format()
    assert "run" in (tasks.error or "") and "release.wait()" in (tasks.stack or "")
    assert took < 0.2 + 0.25 + 2.0  # its deadline, the cancellation grace, a loaded machine
    assert all(sup.report.shutdown[f"idle{i}"]["tasks"].outcome == Outcome.OK for i in range(50))
    assert sup.report.shutdown["dependent"]["tasks"].outcome == Outcome.OK
