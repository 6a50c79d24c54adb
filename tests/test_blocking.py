"""The blocking detector names the service, the line and the call that held the loop."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import anyio
import pytest

from lifecycle import ConfigError, Service, Supervisor, every
from lifecycle.blocking import BlockingDetector
from lifecycle.events import Event, LoopBlocked

pytestmark = pytest.mark.anyio


class Ingest(Service):
    """An ``@every`` body that blocks the loop once with a sync sleep."""

    def __init__(self) -> None:
        super().__init__(name="ingest")
        self.blocked = False

    @every(0.01)
    async def poll(self) -> None:
        if not self.blocked:
            self.blocked = True
            time.sleep(1.5)  # noqa: ASYNC251 - the blocking call the report must name


SLEEP_LINE = next(i for i, line in enumerate(Path(__file__).read_text().splitlines(), 1)
                  if "time.sleep(1.5)" in line)


async def test_a_sync_sleep_in_an_every_body_is_named_in_the_report_and_the_log(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "lifecycle.blocking")
    sup = Supervisor([Ingest()], blocking_threshold=0.5)
    seen = anyio.Event()
    events: list[LoopBlocked] = []

    def on_event(event: Event) -> None:
        if isinstance(event, LoopBlocked):
            events.append(event)
            seen.set()

    sup.subscribe(on_event)
    async with sup:
        with anyio.fail_after(20):
            await seen.wait()
    where = f"test_blocking.py:{SLEEP_LINE}"
    [incident] = sup.report.blocked
    assert incident.service == "ingest" and incident.where.endswith(where)
    assert incident.call == "time.sleep" and 1.0 <= incident.seconds < 10
    text = sup.report.format()
    assert "event loop blocked" in text
    assert f"in service 'ingest' at tests/{where} in time.sleep" in text
    [record] = [r for r in caplog.records if r.name == "lifecycle.blocking"]
    message = record.getMessage()
    assert f"in service 'ingest' at tests/{where} in time.sleep" in message
    assert "in poll\n    time.sleep(1.5)" in message  # the stack, captured while blocked
    assert events[0].service == "ingest" and events[0].call == "time.sleep"


async def test_a_loop_that_keeps_turning_records_no_incident() -> None:
    sup = Supervisor([Service(name="idle")], blocking_threshold=0.2)
    async with sup:
        await anyio.sleep(0.5)
    assert sup.report.blocked == []


async def test_none_disables_the_detector_and_its_thread() -> None:
    sup = Supervisor([Service(name="idle")], blocking_threshold=None)
    async with sup:
        names = [t.name for t in threading.enumerate()]
    assert "lifecycle.blocking-detector" not in names


async def test_the_detector_thread_runs_with_the_supervisor_and_ends_with_it() -> None:
    sup = Supervisor([Service(name="idle")])
    async with sup:
        assert "lifecycle.blocking-detector" in [t.name for t in threading.enumerate()]
    assert "lifecycle.blocking-detector" not in [t.name for t in threading.enumerate()]


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan"), "0.5", True])
def test_a_bad_threshold_is_a_config_error_naming_it(bad: object) -> None:
    with pytest.raises(ConfigError, match="blocking_threshold"):
        Supervisor([Service(name="x")], blocking_threshold=bad)  # type: ignore[arg-type]


def test_under_a_systemd_watchdog_the_stack_is_logged_before_it_would_fire() -> None:
    # WATCHDOG_USEC=2 s: the notifier pings every 1 s, systemd kills 2 s after the last ping,
    # so at worst 1 s after the loop stopped; the detector must speak well before that.
    detector = BlockingDetector(5.0, environ={"WATCHDOG_USEC": "2000000"})
    assert detector.threshold + detector.interval < 1.0
    assert BlockingDetector(0.2, environ={"WATCHDOG_USEC": "2000000"}).threshold == 0.2
    assert BlockingDetector(5.0, environ={}).threshold == 5.0


class BlocksItsStop(Service):
    async def stop(self) -> None:
        time.sleep(0.8)  # noqa: ASYNC251 - blocks the loop in the last stage of the run


async def test_a_block_in_the_last_stop_stage_is_still_in_the_report() -> None:
    sup = Supervisor([BlocksItsStop(name="closer")], blocking_threshold=0.3)
    async with sup:
        pass
    [incident] = sup.report.blocked
    assert incident.service == "closer" and incident.call == "time.sleep"
    assert incident.seconds >= 0.5


class LeaksInSource(Service):
    """A secret literal on the blocking line: it must not reach the log or the report."""

    def secrets(self) -> list[str]:
        return ["hunter2-secret"]

    @every(0.01)
    async def poll(self) -> object:
        time.sleep(0.8 if "hunter2-secret" else 0)  # noqa: ASYNC251
        return every.STOP


async def test_the_logged_and_reported_stack_has_secrets_removed(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "lifecycle.blocking")
    sup = Supervisor([LeaksInSource(name="leaky")], blocking_threshold=0.3)
    seen = anyio.Event()
    sup.subscribe(lambda e: seen.set() if isinstance(e, LoopBlocked) else None)
    async with sup:
        with anyio.fail_after(20):
            await seen.wait()
    [incident] = sup.report.blocked
    assert "time.sleep(0.8 if" in incident.stack and "hunter2-secret" not in incident.stack
    assert "hunter2-secret" not in caplog.text and "time.sleep(0.8 if" in caplog.text
