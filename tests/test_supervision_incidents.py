"""A recovery that does not restore health cannot repeat forever, nor can a slow restart loop.

Simulated days on trio's MockClock: the clock jumps whenever every task waits, so a day of
checks every second runs in well under a second of test time.
"""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

import anyio
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trio.testing import MockClock

from lifecycle import (
    ConfigError,
    Health,
    LifecycleReport,
    RestartPolicy,
    Service,
    ServiceState,
    Supervisor,
    every,
)
from lifecycle.events import Event

pytestmark = pytest.mark.anyio

DAY = 86_400.0
HOUR = 3_600.0


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return "trio", {"clock": MockClock(autojump_threshold=0)}


class Detector(Service):
    """The guardian's detector: ``check()`` fails until ``recover()`` and stays healthy
    ``healthy_for`` seconds after each recovery (0: never healthy; inf: healed for good)."""

    check_interval = 1.0
    check_timeout = 0.5
    failure_threshold = 3
    grace_period = 10.0
    cooldown = 30.0

    def __init__(self, healthy_for: float = 0.0, **kw: Any) -> None:
        super().__init__(**kw)
        self.healthy_for = healthy_for
        self.healthy_until = -math.inf
        self.checks: list[float] = []
        self.recoveries: list[float] = []

    async def check(self) -> Health:
        now = anyio.current_time()
        self.checks.append(now)
        ok = now < self.healthy_until
        return Health(ok, "" if ok else "the table looks corrupt")

    async def recover(self) -> None:
        now = anyio.current_time()
        self.recoveries.append(now)
        self.healthy_until = now + self.healthy_for


class Timeline:
    """Events with the simulated time they happened at."""

    def __init__(self) -> None:
        self.events: list[tuple[float, Event]] = []

    def __call__(self, event: Event) -> None:
        self.events.append((anyio.current_time(), event))

    def kinds(self, kind: str) -> list[Event]:
        return [e for _, e in self.events if e.kind == kind]

    def at(self, kind: str) -> list[float]:
        return [t for t, e in self.events if e.kind == kind]


async def serve_for(sup: Supervisor, seconds: float, timeline: Timeline) -> LifecycleReport:
    """Serve until the app stops by itself or ``seconds`` have passed, whichever is first."""
    sup.subscribe(timeline)

    async def stop_later() -> None:
        await anyio.sleep(seconds)
        sup.request_shutdown("the simulated run is over")

    async with anyio.create_task_group() as tg:
        tg.start_soon(stop_later)
        report = await sup.serve(handle_signals=False)
        tg.cancel_scope.cancel()
    return report


async def test_a_check_that_never_passes_after_recovery_escalates_after_max_recoveries() -> None:
    detector = Detector()  # the seed incident's knobs: 1 s checks, threshold 3, grace 10, cooldown 30
    timeline = Timeline()
    began = anyio.current_time()
    report = await serve_for(Supervisor([detector], leak_check=False), DAY, timeline)
    assert len(detector.recoveries) == 3  # max_recoveries, not ~2,600 a day
    assert report.exit_code == 3  # then="shutdown"
    assert anyio.current_time() - began < HOUR  # it stopped early, not at the end of the day
    assert len(timeline.kinds("HealthAlert")) == 1
    [escalated] = timeline.kinds("ServiceEscalated")
    assert escalated.to_dict()["reason"].startswith("3 recoveries of 'detector' did not restore health")
    assert escalated.to_dict()["action"] == "shutdown"
    assert "3 recoveries of 'detector' did not restore health" in (report.reason or "")
    counts = report.counts["detector"]
    assert (counts.recoveries, counts.incidents, counts.escalations) == (3, 1, 1)


async def test_recovery_pauses_grow_within_one_incident() -> None:
    detector = Detector(restart=RestartPolicy(max_recoveries=4))
    timeline = Timeline()
    await serve_for(Supervisor([detector], leak_check=False), DAY, timeline)
    rec = detector.recoveries
    assert len(rec) == 4
    gaps = [b - a for a, b in itertools.pairwise(rec)]
    assert gaps == sorted(gaps) and gaps[0] < gaps[-1]
    for k, t in enumerate(rec, start=1):  # no check during the k-th pause: cooldown * 2**(k-1)
        pause = detector.cooldown * 2 ** (k - 1)
        assert not [c for c in detector.checks if t < c < t + pause]


async def test_a_check_that_relapses_an_hour_after_each_recovery_recovers_once_per_incident() -> None:
    detector = Detector(healthy_for=HOUR, check_interval=5.0)  # 17,280 checks, not 86,400
    timeline = Timeline()
    report = await serve_for(Supervisor([detector], leak_check=False), DAY, timeline)
    recoveries = len(detector.recoveries)
    assert recoveries >= 20  # about one incident an hour, all day long
    assert len(timeline.kinds("HealthAlert")) == recoveries  # one alert per incident
    assert len(timeline.kinds("HealthRestored")) in (recoveries, recoveries - 1)
    assert all(e.to_dict()["recoveries"] == 1 for e in timeline.kinds("HealthRestored"))
    assert not timeline.kinds("ServiceEscalated")
    assert report.exit_code == 0 and report.reason == "the simulated run is over"
    assert report.counts["detector"].incidents == recoveries


async def test_a_recovery_whose_health_does_not_last_the_stable_period_does_not_count() -> None:
    # healthy for 20 s after each recovery, then corrupt again: not a success with a 60 s
    # stable period, however the recoveries are spaced
    detector = Detector(healthy_for=20.0, restart=RestartPolicy(stable_period=60.0))
    timeline = Timeline()
    report = await serve_for(Supervisor([detector], leak_check=False), DAY, timeline)
    assert len(detector.recoveries) == 3
    assert len(timeline.kinds("HealthAlert")) == 1
    assert not timeline.kinds("HealthRestored")
    assert report.exit_code == 3


async def test_give_up_leaves_the_service_failed_stops_checking_and_shows_it() -> None:
    detector = Detector(restart=RestartPolicy(max_recoveries=2, then="give_up"))
    timeline = Timeline()
    sup = Supervisor([detector, Service(name="other")], leak_check=False)
    sup.subscribe(timeline)
    async with sup:
        with anyio.fail_after(HOUR):
            while len(detector.recoveries) < 1:
                await anyio.sleep(1)
        view = sup.health()["services"]["detector"]
        assert view["incident"] and view["recovering"] and not view["escalated"]
        assert (view["incident_recoveries"], view["max_recoveries"]) == (1, 2)
        assert not sup.ready
        with anyio.fail_after(HOUR):
            while detector.state != ServiceState.FAILED:
                await anyio.sleep(1)
        view = sup.health()["services"]["detector"]
        assert view["escalated"] and "2 recoveries of 'detector'" in view["escalation"]
        assert view["incident_recoveries"] == 2 and view["state"] == "failed"
        assert not sup.shutdown_requested
        checks = len(detector.checks)
        await anyio.sleep(DAY)
        assert len(detector.checks) == checks
    report = sup.report
    assert report.exit_code == 0 and not report.ok
    assert report.health["detector"]["escalated"] is True
    assert json.loads(json.dumps(report.to_dict()))["health"]["detector"]["incident_recoveries"] == 2
    assert "escalated: 2 recoveries of 'detector' did not restore health" in report.format()
    assert [e.to_dict()["action"] for e in timeline.kinds("ServiceEscalated")] == ["give_up"]


async def test_a_run_that_fails_40_s_after_every_restart_escalates() -> None:
    class Consumer(Service):
        def __init__(self) -> None:
            super().__init__()  # the default RestartPolicy
            self.runs: list[float] = []

        async def run(self) -> None:
            self.runs.append(anyio.current_time())
            await anyio.sleep(40)
            raise ConnectionError("lost the broker")

    svc = Consumer()
    timeline = Timeline()
    report = await serve_for(Supervisor([svc], leak_check=False), DAY, timeline)
    assert report.exit_code == 3
    assert len(svc.runs) == 6  # the first run and max_restarts=5 restarts
    assert "run ended 6 times in a row, each within 60s of starting" in (report.reason or "")
    assert len(timeline.kinds("ServiceEscalated")) == 1
    assert report.counts["consumer"].restarts == 5 and report.counts["consumer"].failures == 6


async def test_a_run_that_fails_two_hours_after_each_restart_never_escalates() -> None:
    class Nightly(Service):
        def __init__(self) -> None:
            super().__init__()
            self.runs: list[float] = []

        async def run(self) -> None:
            self.runs.append(anyio.current_time())
            await anyio.sleep(2 * HOUR)
            raise ConnectionError("lost the broker")

    svc = Nightly()
    timeline = Timeline()
    report = await serve_for(Supervisor([svc], leak_check=False), DAY, timeline)
    assert len(svc.runs) == 12
    assert not timeline.kinds("ServiceEscalated") and report.exit_code == 0
    # each failure followed a stable run, so the backoff starts again from its first delay
    assert all(e.to_dict()["delay"] <= 0.5 for e in timeline.kinds("ServiceRestarting"))


async def test_a_recovery_by_restart_whose_start_fails_escalates_at_once() -> None:
    class Store(Service):
        check_interval = 1.0
        grace_period = 0.0
        starts = 0

        async def start(self) -> None:
            self.starts += 1
            if self.starts > 1:
                raise ConnectionRefusedError("the disk is gone")

        async def check(self) -> bool:
            return False

    svc = Store()
    timeline = Timeline()
    report = await serve_for(Supervisor([svc], leak_check=False), DAY, timeline)
    assert svc.starts == 2 and report.exit_code == 3
    [escalated] = timeline.kinds("ServiceEscalated")
    assert "restart to recover 'store' error: ConnectionRefusedError: the disk is gone" in (
        escalated.to_dict()["reason"])


async def test_an_hourly_loop_whose_body_always_fails_escalates() -> None:
    class Report(Service):
        @every(HOUR)
        async def send(self) -> None:
            raise ConnectionError("mail server refused")

    timeline = Timeline()
    report = await serve_for(Supervisor([Report()], leak_check=False), DAY, timeline)
    # up an hour before each failure, but no body ever completed: no restart helped
    assert report.exit_code == 3 and report.counts["report"].restarts == 5
    assert "loop send ended 6 times in a row" in (report.reason or "")


async def test_an_hourly_loop_that_fails_now_and_then_between_good_runs_never_escalates() -> None:
    class Report(Service):
        sent = 0

        @every(HOUR)
        async def send(self) -> None:
            self.sent += 1
            if self.sent % 2 == 0:
                raise ConnectionError("mail server refused")

    timeline = Timeline()
    report = await serve_for(Supervisor([Report()], leak_check=False), DAY, timeline)
    assert report.exit_code == 0 and report.counts["report"].restarts >= 10
    assert not timeline.kinds("ServiceEscalated")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(interval=st.floats(0.05, 120.0), threshold=st.integers(1, 10),
       grace=st.one_of(st.just(0.0), st.floats(0.01, 900.0)),
       cooldown=st.one_of(st.just(0.0), st.floats(0.01, 900.0)),
       max_recoveries=st.integers(0, 5), then=st.sampled_from(["shutdown", "give_up"]),
       healthy_for=st.sampled_from([0.0, 0.5, 30.0]))
def test_no_combination_of_knobs_lets_a_useless_recovery_repeat(
        interval: float, threshold: int, grace: float, cooldown: float, max_recoveries: int,
        then: str, healthy_for: float) -> None:
    """For any knobs, a check healthy at most briefly after each recovery: at most
    ``max_recoveries`` recoveries in a simulated day, then one escalation, one alert."""
    policy = RestartPolicy(max_recoveries=max_recoveries, then=then,  # type: ignore[arg-type]
                           stable_period=max(grace, 3 * interval, 2 * healthy_for))
    detector = Detector(healthy_for=healthy_for, check_interval=interval, failure_threshold=threshold,
                        grace_period=grace, cooldown=cooldown, check_timeout=min(interval, 5.0),
                        restart=policy)
    timeline = Timeline()

    async def main() -> LifecycleReport:
        return await serve_for(Supervisor([detector], leak_check=False), DAY, timeline)

    report = trio.run(main, clock=MockClock(autojump_threshold=0))
    assert len(detector.recoveries) <= max_recoveries
    assert len(timeline.kinds("ServiceEscalated")) == 1
    assert len(timeline.kinds("HealthAlert")) == 1
    [escalated_at] = timeline.at("ServiceEscalated")
    assert not [c for c in detector.checks if c > escalated_at]  # no check after the escalation
    if then == "shutdown":
        assert report.exit_code == 3
    else:
        assert detector.state == ServiceState.FAILED and report.exit_code == 0


@pytest.mark.parametrize("knob", [{"max_recoveries": -1}, {"max_recoveries": 1.5},
                                  {"max_recoveries": True}, {"stable_period": -1.0},
                                  {"stable_period": math.nan}, {"stable_period": "60"}])
def test_bad_recovery_limits_are_config_errors_naming_the_knob(knob: dict[str, Any]) -> None:
    [name] = knob
    with pytest.raises(ConfigError, match=name):
        RestartPolicy(**knob)


async def test_the_example_in_the_supervision_guide_holds() -> None:
    class Guardian(Service):  # as in docs/supervision.md, "Health checks"
        check_interval = 1.0
        check_timeout = 0.5
        failure_threshold = 3
        grace_period = 10.0
        cooldown = 30.0

        async def check(self) -> bool | Health:
            return Health(ok=False, reason="v3 is corrupt", detail={"version": 3})

        async def recover(self) -> None:
            ...

    async with Supervisor([Guardian()]) as sup:  # "Testing with simulated time"
        await anyio.sleep(3600)
    assert len(sup.report.restarts) == 3
    assert sup.report.counts["guardian"].escalations == 1
    # the timeline the guide gives: recoveries at about 12 s, 45 s and 108 s
    assert [round(r.began) for r in sup.report.restarts] == [12, 45, 108]
    [escalation] = sup.report.failures
    assert round(escalation.at) == 231 and "did not restore health" in escalation.action
