"""Restart strategies on the chain db -> cache -> api: what restarts, in which order, how often.

The short cases run in real time on asyncio and trio; the long ones (budgets over minutes,
health checks) in simulated time with trio's MockClock.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest
from trio.testing import MockClock

from lifecycle import ConfigError, Health, RestartPolicy, Service, ServiceState, Supervisor
from lifecycle.events import Event
from lifecycle.trace import chrome_trace

pytestmark = pytest.mark.anyio

FAST = RestartPolicy(backoff=(0.01, 0.01), jitter=0.0, max_restarts=5, window=3600.0)


class Node(Service):
    """Records its start, stop and run calls in a shared journal."""

    def __init__(self, journal: list[str], fail_runs: int = 0, **kw: Any) -> None:
        kw.setdefault("restart", FAST)
        super().__init__(**kw)
        self.journal = journal
        self.fail_runs = fail_runs  # this many run() calls fail (then run() serves)
        self.runs = 0
        self.unhealthy = False

    async def start(self) -> None:
        self.journal.append(f"{self.name}.start")

    async def run(self) -> None:
        self.runs += 1
        self.journal.append(f"{self.name}.run")
        if self.runs <= self.fail_runs:
            await anyio.sleep(0.05)
            raise ConnectionError(f"{self.name} lost its socket")
        await self.wait_shutdown()

    async def stop(self) -> None:
        self.journal.append(f"{self.name}.stop")


def chain(journal: list[str], **fail: int) -> list[Node]:
    return [Node(journal, fail.get("db", 0), name="db"),
            Node(journal, fail.get("cache", 0), name="cache", depends_on="db"),
            Node(journal, fail.get("api", 0), name="api", depends_on="cache")]


def cascade_events(events: list[Event]) -> list[tuple[str, str | None]]:
    wanted = {"ServiceFailed", "ServiceRestarting", "CascadeRestarting", "ServiceStopped",
              "ServiceStarting", "ServiceStarted", "CascadeRestarted"}
    first = next(i for i, e in enumerate(events) if e.kind == "AllStarted")
    return [(e.kind, e.service) for e in events[first:] if e.kind in wanted]


async def serve_until(sup: Supervisor, done: Any, limit: float = 10.0) -> None:
    async with sup:
        with anyio.fail_after(limit):
            while not done():
                await anyio.sleep(0.01)


async def test_rest_for_one_restarts_the_dependents_of_a_failed_run_in_order() -> None:
    journal: list[str] = []
    events: list[Event] = []
    db, cache, api = chain(journal, db=1)
    sup = Supervisor([db, cache, api], restart_strategy="rest_for_one", leak_check=False)
    sup.subscribe(events.append)
    await serve_until(sup, lambda: api.runs == 2 and sup.ready)
    after_start = journal[6:]  # after three starts and three run() calls
    assert after_start[:6] == ["api.stop", "cache.stop", "db.stop",
                               "db.start", "cache.start", "api.start"], journal
    assert sorted(after_start[6:9]) == ["api.run", "cache.run", "db.run"]
    assert cascade_events(events)[:12] == [
        ("ServiceFailed", "db"), ("ServiceRestarting", "db"), ("CascadeRestarting", "db"),
        ("ServiceStopped", "api"), ("ServiceStopped", "cache"), ("ServiceStopped", "db"),
        ("ServiceStarting", "db"), ("ServiceStarted", "db"),
        ("ServiceStarting", "cache"), ("ServiceStarted", "cache"),
        ("ServiceStarting", "api"), ("ServiceStarted", "api")]
    assert cascade_events(events)[12] == ("CascadeRestarted", "db")
    report = sup.report
    assert report.ok is False and report.exit_code == 0, report.format()  # a failure, recovered
    [casc] = report.cascades
    assert (casc.service, casc.strategy, casc.where, casc.services, casc.outcome) == (
        "db", "rest_for_one", "run", ["db", "cache", "api"], "ok")
    assert [(r.service, r.where) for r in report.restarts] == [
        ("db", "run"), ("cache", "cascade"), ("api", "cascade")]
    assert "stopped api, cache, db; started db, cache, api -> ok" in report.format()
    [traced] = [e for e in chrome_trace(report)["traceEvents"] if e["name"] == "rest_for_one restart"]
    assert traced["args"]["services"] == ["db", "cache", "api"] and traced["dur"] > 0


async def test_rest_for_one_leaves_what_the_failed_service_depends_on_alone(
        caplog: pytest.LogCaptureFixture) -> None:
    journal: list[str] = []
    db, cache, api = chain(journal, cache=1)
    sup = Supervisor([db, cache, api], restart_strategy="rest_for_one", leak_check=False)
    with caplog.at_level(logging.INFO, logger="lifecycle.events"):
        await serve_until(sup, lambda: api.runs == 2 and sup.ready)
    assert ("cache: run restart takes cache, api with it (rest_for_one: stopping in reverse "
            "order, then starting in order)") in caplog.messages
    assert journal.count("db.start") == 1 and journal.count("db.stop") == 1  # the final close
    assert db.runs == 1
    assert sup.report.cascades[0].services == ["cache", "api"]


async def test_one_for_all_restarts_every_service() -> None:
    journal: list[str] = []
    db, cache, api = chain(journal, api=1)
    sup = Supervisor([db, cache, api], restart_strategy="one_for_all", leak_check=False)
    await serve_until(sup, lambda: db.runs == 2 and api.runs == 2 and sup.ready)
    after_start = journal[6:]  # after three starts and three run() calls
    assert after_start[:6] == ["api.stop", "cache.stop", "db.stop",
                               "db.start", "cache.start", "api.start"], journal
    assert sup.report.cascades[0].services == ["db", "cache", "api"]


async def test_one_for_one_restarts_only_the_failed_run() -> None:
    journal: list[str] = []
    db, cache, api = chain(journal, db=1)
    sup = Supervisor([db, cache, api], leak_check=False)
    await serve_until(sup, lambda: db.runs == 2)
    assert journal.count("cache.start") == 1 and journal.count("db.start") == 1
    assert sup.report.cascades == []


async def test_a_per_service_override_decides_for_that_service() -> None:
    journal: list[str] = []
    db, cache, api = chain(journal, db=1)
    db.restart_strategy = "rest_for_one"
    sup = Supervisor([db, cache, api], leak_check=False)  # one_for_one for the others
    await serve_until(sup, lambda: api.runs == 2 and sup.ready)
    assert sup.report.cascades[0].strategy == "rest_for_one"


async def test_the_failed_services_budget_escalates_a_run_that_keeps_failing() -> None:
    journal: list[str] = []
    db, cache, api = chain(journal, db=100)
    db.restart = RestartPolicy(backoff=(0.01, 0.01), jitter=0.0, max_restarts=2, window=3600.0)
    sup = Supervisor([db, cache, api], restart_strategy="rest_for_one", leak_check=False)
    with anyio.fail_after(10):
        report = await sup.serve(handle_signals=False)
    assert len(report.cascades) == 2 and db.runs == 3
    assert report.exit_code == 3
    assert "more than 2 restarts" in (report.reason or "")
    assert journal.count("api.start") == 3  # the first start and one per cascade


def test_unknown_strategies_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"restart_strategy.*rest_for_one.*'all_for_one'"):
        Supervisor([Service(name="x")], restart_strategy="all_for_one")
    with pytest.raises(ConfigError, match="service 'x': restart_strategy"):
        Supervisor([Service(name="x", restart_strategy="sometimes")])


# ----- long spans in simulated time -------------------------------------------------------
@pytest.mark.parametrize("anyio_backend", [("trio", {"clock": MockClock(autojump_threshold=0)})])
async def test_a_dependents_own_budget_escalates_when_its_dependency_keeps_restarting() -> None:
    journal: list[str] = []

    class Flapping(Node):
        async def run(self) -> None:  # fails once a minute, all day
            self.runs += 1
            await anyio.sleep(60)
            raise ConnectionError("db lost its socket")

    db = Flapping(journal, name="db",
                  restart=RestartPolicy(backoff=(1.0, 1.0), max_restarts=100, window=3600.0))
    cache = Node(journal, name="cache", depends_on="db",
                 restart=RestartPolicy(max_restarts=3, window=3600.0))
    api = Node(journal, name="api", depends_on="cache")
    sup = Supervisor([db, cache, api], restart_strategy="rest_for_one", leak_check=False)
    report = await sup.serve(handle_signals=False)
    assert len(report.cascades) == 4  # the fourth finds cache's budget spent
    assert report.cascades[-1].outcome == "skipped"
    assert report.exit_code == 3
    assert "'cache'" in (report.reason or "") and "more than 3 restarts" in (report.reason or "")
    assert journal.count("cache.start") == 4  # the first start and three cascades


@pytest.mark.parametrize("anyio_backend", [("trio", {"clock": MockClock(autojump_threshold=0)})])
async def test_a_dependent_that_gives_up_stays_failed_and_the_rest_runs_on() -> None:
    journal: list[str] = []
    db, cache, api = chain(journal, db=2)
    db.restart = RestartPolicy(backoff=(5.0, 5.0), jitter=0.0, max_restarts=5, window=3600.0)
    api.restart = RestartPolicy(max_restarts=1, window=3600.0, then="give_up")
    sup = Supervisor([db, cache, api], restart_strategy="rest_for_one", leak_check=False)
    async with sup:
        await anyio.sleep(600)
        assert api.state == ServiceState.FAILED
        assert db.state == cache.state == ServiceState.RUNNING and not sup.shutdown_requested
        assert not sup.ready
    assert [c.outcome for c in sup.report.cascades] == ["ok", "failed"]
    assert journal.count("api.start") == 2 and journal.count("cache.start") == 3


@pytest.mark.parametrize("anyio_backend", [("trio", {"clock": MockClock(autojump_threshold=0)})])
async def test_a_health_restart_of_the_dependency_restarts_its_dependents() -> None:
    journal: list[str] = []
    events: list[Event] = []

    class Checked(Node):
        check_interval = 1.0
        failure_threshold = 2
        grace_period = 0.001
        cooldown = 5.0

        async def start(self) -> None:
            await super().start()
            self.unhealthy = False

        async def check(self) -> Health:
            return Health(not self.unhealthy, "stale" if self.unhealthy else "")

    db = Checked(journal, name="db")
    cache = Node(journal, name="cache", depends_on="db")
    api = Checked(journal, name="api", depends_on="cache")
    sup = Supervisor([db, cache, api], restart_strategy="rest_for_one", leak_check=False)
    sup.subscribe(events.append)
    async with sup:
        await anyio.sleep(10)
        db.unhealthy = True
        await anyio.sleep(60)
        assert sup.ready
    assert journal.count("db.start") == journal.count("cache.start") == 2
    assert journal.count("api.start") == 2
    [casc] = sup.report.cascades
    assert (casc.where, casc.outcome) == ("health", "ok")
    kinds = [(e.kind, e.service) for e in events]
    assert kinds.index(("ServiceRecovering", "db")) < kinds.index(("CascadeRestarting", "db")) \
        < kinds.index(("CascadeRestarted", "db"))
    assert api.runs == 2  # its run() and its health checks began again


async def test_shutdown_during_a_cascade_ends_its_step_and_closes_the_rest() -> None:
    journal: list[str] = []

    class SlowStop(Node):
        async def stop(self) -> None:
            await super().stop()
            if not self.supervisor.shutdown_requested:  # the cascade's stop: shutdown begins
                self.supervisor.request_shutdown("mid-cascade")
            await anyio.sleep(0.3)  # the step in flight ends all the same

    db = Node(journal, 1, name="db")
    cache = SlowStop(journal, name="cache", depends_on="db")
    api = Node(journal, name="api", depends_on="cache")
    sup = Supervisor([db, cache, api], restart_strategy="rest_for_one", shutdown_timeout=10.0)
    with anyio.fail_after(20):
        report = await sup.serve(handle_signals=False)
    [casc] = report.cascades
    assert casc.outcome == "skipped" and "shutdown" in (casc.error or ""), casc
    assert journal[6:] == ["api.stop", "cache.stop", "db.stop"]  # db: by the close; no start
    for name in ("api", "cache"):  # stopped by the cascade, not a second time
        assert report.stage(name, "stop").error == "already stopped for a restart that did not finish"
    assert report.stage("db", "stop").error is None
    assert report.shutdown_elapsed < 5.0
    assert report.leaks is not None and report.leaks.ok, report.leaks.format()
    assert report.exit_code == 0 and report.reason == "mid-cascade", report.format()
