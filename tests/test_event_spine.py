"""Events are the spine: a subscriber that sees only the events rebuilds the whole report.

The subscriber below is written here, independently of ``lifecycle.recorder``: each event
that carries a record hands it over, and the report it builds from a start, a restart, a
health incident that recovers, one that escalates, and a close equals the supervisor's own.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from lifecycle import Health, LifecycleReport, RestartPolicy, Service, Supervisor
from lifecycle.events import (
    CascadeRestarting,
    CloseFinished,
    CloseStarted,
    DetailsReported,
    Event,
    FallbackRecovered,
    HealthAlert,
    HealthRestored,
    HealthUpdated,
    LeaksChecked,
    LoopBlocked,
    RestartFinished,
    ServiceEscalated,
    ServiceFailed,
    ServiceReloaded,
    ServiceRestarting,
    ServiceStarted,
    ServiceStartFailed,
    ServiceStopped,
    ShutdownForced,
    ShutdownRequested,
    StageFinished,
    StartupFinished,
)
from lifecycle.recorder import Recorder

pytestmark = pytest.mark.anyio


class Rebuilt:
    """A report built from events alone (no access to the supervisor)."""

    def __init__(self, name: str) -> None:
        self.report = LifecycleReport(name=name)
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        report = self.report
        if isinstance(event, ShutdownRequested):
            report.reason = report.reason or event.reason
            report.service_failed |= event.failed
        elif isinstance(event, ShutdownForced):
            report.forced_by = event.signal
        elif isinstance(event, StartupFinished):
            report.startup = {rec.service: rec for rec in event.records}
            report.startup_elapsed, report.startup_cancelled = event.elapsed, event.cancelled
        elif isinstance(event, (ServiceFailed, ServiceRestarting, RestartFinished)):
            history = report.failures if isinstance(event, ServiceFailed) else report.restarts
            history.append(event.record)  # type: ignore[arg-type]
        elif isinstance(event, CascadeRestarting):
            report.cascades.append(event.record)
        elif isinstance(event, ServiceReloaded):
            report.reloads.append(event.record)
        elif isinstance(event, LoopBlocked):
            report.blocked.append(event.record)
        elif isinstance(event, HealthAlert):
            report.service_counts(event.service or "").incidents += 1
        elif isinstance(event, ServiceEscalated):
            report.service_counts(event.service or "").escalations += 1
        elif isinstance(event, HealthUpdated):
            report.health[event.service or ""] = dict(event.view)
        elif isinstance(event, FallbackRecovered) and event.restart_reason:
            report.restart_requested = event.restart_reason
        elif isinstance(event, CloseStarted):
            report.shutdown_began, report.shutdown_budget = event.began, event.budget
        elif isinstance(event, ServiceStopped) and event.records is not None:
            report.shutdown[event.service or ""] = {r.stage: r for r in event.records}
        elif isinstance(event, DetailsReported):
            report.details[event.service or ""] = dict(event.details)
        elif isinstance(event, LeaksChecked):
            report.leaks = event.leaks
        elif isinstance(event, CloseFinished):
            report.shutdown_elapsed = event.elapsed


FAST = dict(check_interval=0.01, check_timeout=1.0, failure_threshold=1, grace_period=0.0,
            cooldown=0.0)


class Database(Service):
    """Starts, stops with a flush stage, reports details at the close."""

    def stages(self) -> list[Any]:
        from lifecycle import Stage

        return [Stage("flush", 1.0), *super().stages()]

    async def flush(self) -> None:
        await anyio.lowlevel.checkpoint()

    def report_details(self) -> dict[str, Any]:
        return {"rows": 3}


class Worker(Service):
    """Its ``run()`` fails once, then runs until the close: one restart."""

    restart = RestartPolicy(backoff=(0.01, 0.01), jitter=0.0)

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.runs = 0

    async def run(self) -> None:
        self.runs += 1
        if self.runs == 1:
            raise RuntimeError("first run fails")
        await self.wait_shutdown()


class Healing(Service):
    """Unhealthy until recovered once: an incident that recovers, then ends."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        for key, value in FAST.items():
            setattr(self, key, value)
        self.restart = RestartPolicy(stable_period=0.05, max_recoveries=3)
        self.recovered = False

    async def check(self) -> Health:
        return Health(self.recovered, "" if self.recovered else "needs a recovery")

    async def recover(self) -> None:
        self.recovered = True


class Hopeless(Service):
    """Never healthy, optional: one recovery, then the escalation gives it up."""

    optional = True

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        for key, value in FAST.items():
            setattr(self, key, value)
        self.restart = RestartPolicy(max_recoveries=1, stable_period=10.0, then="give_up")

    async def check(self) -> Health:
        return Health(False, "always broken")

    async def recover(self) -> None:
        await anyio.lowlevel.checkpoint()


class Broken(Service):
    """Optional, and its start fails."""

    optional = True

    async def start(self) -> None:
        raise RuntimeError("no such host")


async def test_a_subscriber_rebuilds_the_report_from_the_events_of_a_start_restart_incidents_and_close(
        ) -> None:
    sup = Supervisor([Database(name="db"), Worker(name="worker", depends_on=["db"]),
                      Healing(name="healing"), Hopeless(name="hopeless"), Broken(name="broken")],
                     shutdown_timeout=10.0)
    rebuilt = Rebuilt(sup.name)
    sup.subscribe(rebuilt)
    second = LifecycleReport(name=sup.name)
    sup.subscribe(Recorder(second))  # the library's recorder, subscribed like any other
    seen = {"restart": anyio.Event(), "restored": anyio.Event(), "escalated": anyio.Event()}

    def watch(event: Event) -> None:
        if isinstance(event, ServiceRestarting):
            seen["restart"].set()
        elif isinstance(event, HealthRestored):
            seen["restored"].set()
        elif isinstance(event, ServiceEscalated):
            seen["escalated"].set()

    sup.subscribe(watch)
    with anyio.fail_after(30):
        async with sup:
            for happened in seen.values():
                await happened.wait()

    kinds = {type(e) for e in rebuilt.events}
    assert {ServiceStarted, ServiceStartFailed, StartupFinished, ServiceFailed, ServiceRestarting,
            HealthAlert, RestartFinished, HealthRestored, ServiceEscalated, HealthUpdated,
            CloseStarted, StageFinished, ServiceStopped, DetailsReported, LeaksChecked,
            CloseFinished} <= kinds
    for event in rebuilt.events:  # each event that states a fact carries its record
        if isinstance(event, (ServiceStarted, ServiceStartFailed, StageFinished, ServiceFailed,
                              ServiceRestarting, RestartFinished)):
            assert event.record is not None, event
            assert event.record.service == event.service
    stage = next(e for e in rebuilt.events if isinstance(e, StageFinished))
    assert stage.to_dict().keys() == {"kind", "service", "at", "stage", "outcome", "elapsed",
                                      "deadline", "error"}
    assert (stage.stage, stage.outcome) == (stage.record.stage, stage.record.outcome)
    assert sup.report.restarts and sup.report.failures and sup.report.health
    assert rebuilt.report.to_dict() == sup.report.to_dict()
    assert second.to_dict() == sup.report.to_dict()
    assert sup.report.format() == rebuilt.report.format()
