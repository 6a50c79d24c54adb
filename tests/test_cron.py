"""``@cron``: calendar schedules on the shutdown-aware loop, over a simulated day.

trio's MockClock jumps the clock whenever every task waits, so a day of five-minute ticks
runs in a fraction of a second; the fire times are exact.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import pytest
from trio.testing import MockClock

from lifecycle import ConfigError, RestartPolicy, Service, Supervisor, cron, every
from lifecycle.cron import CronSpec

DAY = 24 * 3600.0


@pytest.fixture
def simulated() -> tuple[str, dict[str, Any]]:
    return "trio", {"clock": MockClock(autojump_threshold=0)}


class Compactor(Service):
    def __init__(self, body_seconds: float = 0.0, **kw: Any) -> None:
        super().__init__(**kw)
        self.body_seconds = body_seconds
        self.fired: list[float] = []
        self.after_shutdown = 0

    @cron("*/5 * * * *")
    async def compact(self) -> None:
        if self.shutting_down:
            self.after_shutdown += 1
        self.fired.append(anyio.current_time())
        if self.body_seconds:
            await anyio.sleep(self.body_seconds)


async def _serve_for(services: list[Service], seconds: float) -> Supervisor:
    sup = Supervisor(services, leak_check=False, log_report=False)
    async with sup:
        await anyio.sleep(seconds)
    return sup


def test_a_five_minute_schedule_fires_exactly_288_times_in_a_simulated_day(
        simulated: tuple[str, dict[str, Any]]) -> None:
    svc = Compactor()

    async def main() -> None:
        await _serve_for([svc], DAY)
        count = len(svc.fired)
        await anyio.sleep(3600)  # an hour after the close: nothing more
        assert len(svc.fired) == count

    anyio.run(main, backend=simulated[0], backend_options=simulated[1])
    assert len(svc.fired) == 288
    gaps = {round(b - a, 6) for a, b in zip(svc.fired, svc.fired[1:], strict=False)}
    assert gaps == {300.0}
    assert svc.after_shutdown == 0


def test_a_body_that_overruns_skips_the_missed_ticks_instead_of_bunching_them(
        simulated: tuple[str, dict[str, Any]]) -> None:
    svc = Compactor(body_seconds=7 * 60)  # runs 7 minutes on a 5-minute schedule

    anyio.run(_serve_for, [svc], 3 * 3600.0, backend=simulated[0],
              backend_options=simulated[1])
    gaps = {round(b - a, 6) for a, b in zip(svc.fired, svc.fired[1:], strict=False)}
    assert gaps == {600.0}  # every other slot: the one missed while the body ran is skipped
    assert 17 <= len(svc.fired) <= 18


def test_a_failing_body_is_restarted_by_the_policy_and_keeps_its_schedule(
        simulated: tuple[str, dict[str, Any]]) -> None:
    class Flaky(Service):
        restart = RestartPolicy(on="failure", backoff=(1.0, 1.0), jitter=0.0,
                                max_restarts=100, window=3600.0)

        def __init__(self) -> None:
            super().__init__()
            self.fired = 0

        @cron("0 * * * *")
        async def hourly(self) -> None:
            self.fired += 1
            if self.fired == 2:
                raise RuntimeError("disk busy")

    svc = Flaky()
    sup = anyio.run(_serve_for, [svc], 6 * 3600.0, backend=simulated[0],
                    backend_options=simulated[1])
    assert 6 <= svc.fired <= 7
    assert sup.report.to_dict()["failures"], "the failure is recorded, not lost"


def test_every_stop_ends_a_cron_loop(simulated: tuple[str, dict[str, Any]]) -> None:
    class Once(Service):
        def __init__(self) -> None:
            super().__init__()
            self.fired = 0

        @cron("* * * * *")
        async def once(self) -> object:
            self.fired += 1
            return every.STOP

    svc = Once()
    anyio.run(_serve_for, [svc], 3600.0, backend=simulated[0], backend_options=simulated[1])
    assert svc.fired == 1


@pytest.mark.anyio
async def test_shutdown_ends_a_waiting_cron_loop_at_once() -> None:
    class Yearly(Service):
        @cron("0 0 1 1 *")
        async def rotate(self) -> None:
            raise AssertionError("never due during this test")

    began = anyio.current_time()
    sup = await _serve_for([Yearly()], 0.05)
    assert anyio.current_time() - began < 2.0
    assert sup.report.ok


def test_fields_are_read_in_the_given_time_zone_across_dst_changes() -> None:
    spec = CronSpec("0 9 * * *", ZoneInfo("Europe/Rome"))
    # 2026-03-29: Rome moves from UTC+1 to UTC+2 at 02:00 local time
    fires = [spec.next_after(datetime(2026, 3, 27, 12, 0, tzinfo=timezone.utc).timestamp())]
    for _ in range(2):
        fires.append(spec.next_after(fires[-1]))
    utc = [datetime.fromtimestamp(f, timezone.utc) for f in fires]
    assert [(t.day, t.hour) for t in utc] == [(28, 8), (29, 7), (30, 7)]  # 09:00 CET, CEST


def test_a_time_skipped_by_spring_forward_does_not_fire_and_a_repeated_one_fires_once() -> None:
    spec = CronSpec("30 2 * * *", ZoneInfo("Europe/Rome"))
    spring = spec.next_after(datetime(2026, 3, 28, 12, 0, tzinfo=timezone.utc).timestamp())
    assert datetime.fromtimestamp(spring, timezone.utc).day == 30  # 29 March has no 02:30
    autumn = spec.next_after(datetime(2026, 10, 24, 12, 0, tzinfo=timezone.utc).timestamp())
    after = spec.next_after(autumn)
    assert after - autumn == DAY + 3600  # 25 October's 02:30 once, then 26 October's


@pytest.mark.parametrize(("expression", "tz", "why"), [
    ("*/5 * * *", None, "not a valid cron expression"),
    ("61 * * * *", None, "not a valid cron expression"),
    ("* * * * *", "Mars/Olympus", "not a known time zone"),
])
def test_a_bad_schedule_is_a_config_error_naming_the_method(expression: str, tz: str | None,
                                                             why: str) -> None:
    with pytest.raises(ConfigError, match=why) as info:
        class Bad(Service):
            @cron(expression, tz=tz)
            async def tick(self) -> None: ...
    assert "Bad.tick" in str(info.value)


def test_a_plain_def_under_cron_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="must be `async def`") as info:
        class Bad(Service):
            @cron("* * * * *")
            def tick(self) -> None: ...
    assert "Bad.tick" in str(info.value)
