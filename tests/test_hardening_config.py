"""Configuration is rejected before anything starts, offender named; default deadlines fit
the budget they did not choose (issue 11, items 18 and 19)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from lifecycle import ConfigError, Fallback, RestartPolicy, Service, Stage, Supervisor, every
from lifecycle.adapters.influx import InfluxWriter
from lifecycle.cli import main
from lifecycle.plan import plan_of


class Plain(Service):
    pass


class Forgetful(Service):
    def __init__(self) -> None:  # no super().__init__()
        self.ready = True


class SyncStart(Service):
    def start(self) -> None:  # type: ignore[override]
        pass


class SyncStage(Service):
    stop_stages = (Stage("drain", 1.0),)

    def drain(self) -> None:
        pass


class SyncLoop(Service):
    @every(1.0)
    def tick(self) -> None:
        pass


class HelperStage(Service):
    stop_stages = (Stage("sleep", 1.0),)


def duplicated() -> list[Service]:
    cache = Plain(name="cache")
    return [cache, Fallback("store", Plain(name="db"), cache)]


@pytest.mark.parametrize(("make", "kwargs", "match"), [
    (lambda: [Forgetful()], {}, r"Forgetful .*did not call super\(\).__init__\(\)"),
    (duplicated, {}, r"<Plain 'cache' new> is listed twice \(services\[0\] and a candidate of "
                     r"Fallback 'store'\)"),
    (lambda: [Plain(name="a"), Plain(name="b")][:1] * 2, {}, r"listed twice"),
    (lambda: [SyncStart()], {}, r"service 'sync_start': start\(\) must be an async def"),
    (lambda: [SyncStage()], {}, r"service 'sync_stage': stage method drain\(\) must be an async def"),
    (lambda: [SyncLoop()], {}, r"service 'sync_loop': @every method tick\(\) must be an async def"),
    (lambda: [HelperStage()], {}, r"service 'helper_stage': stage 'sleep' is named after Service.sleep"),
    (lambda: [Plain()], {"leak_check": "yes"}, r"leak_check must be True, False or a LeakCheck, got 'yes'"),
])
def test_bad_configuration_is_refused_naming_the_offender(make: Any, kwargs: dict[str, Any],
                                                          match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Supervisor(make(), **kwargs)


def test_a_restart_policy_with_a_single_backoff_number_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"RestartPolicy\(backoff=...\) must be \(first, cap\), got 5"):
        RestartPolicy(backoff=5)  # type: ignore[arg-type]


def test_a_fallback_depends_on_one_name_given_as_a_string() -> None:
    chain = Fallback("store", Plain(name="db"), depends_on="cache")
    assert chain.depends_on == ("cache",)
    Supervisor([Plain(name="cache"), chain])  # validates: "cache" is known


def test_a_service_without_stop_work_reserves_none_of_a_small_budget() -> None:
    sup = Supervisor([Plain()], shutdown_timeout=2)
    assert plan_of(sup).worst_close == 0


class Flushing(Service):
    async def stop(self) -> None:
        pass


def test_default_deadlines_shrink_to_fit_and_explicit_ones_must_fit() -> None:
    sup = Supervisor([Flushing()], shutdown_timeout=2)  # the inherited 5 s stop_timeout
    assert sup.services[0].stages()[0].timeout == pytest.approx(2.0)
    with pytest.raises(ConfigError, match=r"service 'flushing': stop stages add up to 3 s"):
        Supervisor([Flushing(stop_timeout=3)], shutdown_timeout=2)


def test_an_influx_writers_default_stages_fit_a_ten_second_budget(tmp_path: Path) -> None:
    writer = InfluxWriter(None, spool_path=tmp_path / "spool")
    sup = Supervisor([writer], shutdown_timeout=10)
    stages = {s.name: s.timeout for s in writer.stages()}
    assert sum(stages.values()) == pytest.approx(10.0)
    assert stages["flush"] == pytest.approx(5.0 * 10 / 11)
    plan = plan_of(sup)
    assert any("default stage deadlines shrunk" in w and "flush 5 ->" in w for w in plan.warnings)
    with pytest.raises(ConfigError, match=r"service 'influx_writer': stop stages add up to 12 s"):
        Supervisor([InfluxWriter(None, spool_path=tmp_path / "s2", flush_timeout=12.0)],
                   shutdown_timeout=10)


def shrinking() -> Supervisor:
    """For ``check``: a service with default deadlines (5 s stop) and no explicit ones."""
    return Supervisor([Flushing()])


def test_check_shows_the_deadlines_the_defaults_got(capsys: pytest.CaptureFixture[str]) -> None:
    target = "tests.test_hardening_config:shrinking"
    assert main(["check", target, "--shutdown-timeout", "3"]) == 0
    out = capsys.readouterr().out
    assert "stop 3s" in out
    assert "service 'flushing': default stage deadlines shrunk to fit the 3 s budget: stop 5 -> 3 s" in out


@pytest.mark.anyio
async def test_shrunk_deadlines_are_the_ones_the_close_uses() -> None:
    class Slow(Service):
        async def stop(self) -> None:
            await anyio.sleep(30)

    sup = Supervisor([Slow()], shutdown_timeout=1, leak_check=False, log_report=False)
    async with sup:
        pass
    rec = sup.report.stage("slow", "stop")
    assert rec.outcome == "timeout" and rec.deadline == pytest.approx(1.0)
    assert sup.report.shutdown_elapsed < 2.0
