"""The ``lifecycle_*`` metrics as ``prometheus_client`` parses them, on asyncio and trio."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from lifecycle import Health, Service, Stage, Supervisor
from lifecycle.metrics import collector, exposition

pytestmark = pytest.mark.anyio


class Sick(Service):
    """Health checks that fail (grace 0, threshold high: an incident, no recovery)."""

    check_interval = 0.01
    grace_period = 0.0
    failure_threshold = 1000
    stop_stages = (Stage("drain", 0.1), Stage("close", 1.0))

    def __init__(self) -> None:
        super().__init__(name="sick")
        self.failed = anyio.Event()

    async def check(self) -> Health:
        self.failed.set()
        return Health(False, "always sick")

    async def drain(self) -> None:
        await anyio.sleep(10)  # times out

    async def close(self) -> None:
        pass

    def collect_metrics(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("sick_own_gauge", "A service's own metric", labels=["kind"])
        family.add_metric(["demo"], 42.0)
        yield family


def samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples}


async def test_state_health_stage_outcomes_and_a_services_own_metrics_are_exposed() -> None:
    sup = Supervisor([Sick(), Service(name="plain")], shutdown_timeout=5.0)
    async with sup:
        sick = sup["sick"]
        assert isinstance(sick, Sick)
        with anyio.fail_after(10):
            await sick.failed.wait()
            while not sup.health()["services"]["sick"].get("failed_checks"):
                await anyio.sleep(0.01)  # the monitor counts the verdict after check() returns
        running = samples(exposition(sup, registry=CollectorRegistry())[0])
    assert running[("lifecycle_service_up", (("service", "plain"),))] == 1.0
    assert running[("lifecycle_service_state", (("service", "plain"), ("state", "running")))] == 1
    assert running[("lifecycle_service_state", (("service", "plain"), ("state", "stopped")))] == 0
    assert running[("lifecycle_health_incidents_total", (("service", "sick"),))] == 1
    assert running[("lifecycle_health_check_failures_total", (("service", "sick"),))] >= 1
    assert running[("lifecycle_ready", ())] == 0.0  # a required service in an incident
    assert running[("lifecycle_shutting_down", ())] == 0.0
    assert running[("sick_own_gauge", (("kind", "demo"),))] == 42.0
    assert ("lifecycle_service_start_seconds", (("service", "sick"),)) in running

    after = samples(exposition(sup, registry=CollectorRegistry())[0])
    key = ("lifecycle_stage_outcome_total",
           (("outcome", "timeout"), ("service", "sick"), ("stage", "drain")))
    assert after[key] == 1
    assert after[("lifecycle_stage_seconds", (("service", "sick"), ("stage", "drain")))] >= 0.1
    assert after[("lifecycle_service_up", (("service", "plain"),))] == 0.0
    assert after[("lifecycle_shutting_down", ())] == 1.0


async def test_the_collector_registers_in_a_users_registry() -> None:
    sup = Supervisor([Service(name="x")])
    registry = CollectorRegistry()
    async with sup:
        registry.register(collector(sup))
        assert registry.get_sample_value("lifecycle_service_up", {"service": "x"}) == 1.0
    assert collector(sup) is collector(sup)


async def test_openmetrics_is_served_when_the_scraper_asks() -> None:
    sup = Supervisor([Service(name="x")])
    async with sup:
        body, content_type = exposition(sup, registry=CollectorRegistry(),
                                        accept="application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")


async def test_the_metrics_of_a_finished_run_do_not_keep_its_supervisor_alive() -> None:
    import gc
    import weakref

    sup = Supervisor([Service(name="x")])
    async with sup:
        pass
    collector(sup)
    gone = weakref.ref(sup)
    del sup
    gc.collect()
    assert gone() is None



class FailsOneCheck(Service):
    """Unhealthy once: recovered by a restart (its stop stage runs while the app serves)."""

    check_interval = 0.01
    grace_period = 0.0
    cooldown = 0.0
    failure_threshold = 1

    def __init__(self) -> None:
        super().__init__(name="flaky")
        self.checks = 0

    async def check(self) -> bool:
        self.checks += 1
        return self.checks > 1

    async def stop(self) -> None:
        pass


async def test_a_restarts_stop_and_the_final_close_are_both_counted() -> None:
    from lifecycle.events import Event, HealthRestored

    sup = Supervisor([FailsOneCheck()], shutdown_timeout=5.0)
    restored = anyio.Event()

    def on_event(event: Event) -> None:
        if isinstance(event, HealthRestored):
            restored.set()

    sup.subscribe(on_event)
    key = ("lifecycle_stage_outcome_total",
           (("outcome", "ok"), ("service", "flaky"), ("stage", "stop")))
    async with sup:
        with anyio.fail_after(10):
            await restored.wait()
        serving = samples(exposition(sup, registry=CollectorRegistry())[0])
    closed = samples(exposition(sup, registry=CollectorRegistry())[0])
    assert serving[key] == 1  # the restart's stop
    assert serving[("lifecycle_service_restarts_total", (("service", "flaky"),))] == 1
    assert closed[key] == 2  # and the final close's, read from the report
