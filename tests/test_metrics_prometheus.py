"""A real Prometheus scrapes ``HealthServer``'s ``/metrics`` and finds the lifecycle metrics.

Asyncio only: ``HealthServer`` is aiohttp. Prometheus is queried over its HTTP API from a
worker thread (its client here is blocking ``urllib``), while the app keeps serving.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from lifecycle import RestartPolicy, Service, Supervisor
from lifecycle.adapters.http import HealthServer
from lifecycle.adapters.influx import InfluxWriter
from tests.servers.prometheus import Prometheus

pytestmark = pytest.mark.anyio

OUTCOMES = ("accepted", "written", "spooled", "replayed", "dead_lettered", "dropped")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FailsOnce(Service):
    """``run()`` fails on its first call: the restart policy restarts it once."""

    restart = RestartPolicy(backoff=(0.01, 0.01), jitter=0.0)

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.runs = 0

    async def run(self) -> None:
        self.runs += 1
        if self.runs == 1:
            raise RuntimeError("forced failure")
        await self.sleep(3600)


async def settled(writer: InfluxWriter) -> None:
    """Until every accepted point reached the spool (the spill loop runs every interval)."""
    with anyio.fail_after(30):
        while writer.stats.buffered or writer.stats.in_spool < writer.stats.accepted:
            await anyio.sleep(0.05)  # polling a counter: the writer has no event for it


async def test_prometheus_scrapes_service_up_a_restart_and_the_writers_counters(
        prometheus: Prometheus, tmp_path: Path) -> None:
    health = HealthServer("127.0.0.1", prometheus.target_port)
    writer = InfluxWriter(None, spool_path=tmp_path / "spool", name="influx",
                          flush_interval=0.05)
    sup = Supervisor([health, FailsOnce(name="flaky"), writer], shutdown_timeout=20.0)
    async with sup:
        writer.write_many(f"m,test=prom v={i}i {1_700_000_000_000_000_000 + i}"
                          for i in range(250))
        await settled(writer)

        def scraped() -> dict[str, float]:
            prometheus.wait_for('lifecycle_service_up{service="flaky"}', lambda v: v == 1)
            prometheus.wait_for('lifecycle_service_restarts_total{service="flaky"}',
                                lambda v: v == 1)
            stats = writer.stats
            found = {}
            for outcome in OUTCOMES:
                want = float(getattr(stats, outcome))
                found[outcome] = prometheus.wait_for(
                    f'lifecycle_influx_points_total{{writer="influx",outcome="{outcome}"}}',
                    lambda v, want=want: v == want)  # type: ignore[misc]
            found["backlog"] = prometheus.wait_for(
                'lifecycle_influx_spool_backlog_points{writer="influx"}', lambda v: v == 250)
            found["spool_bytes"] = prometheus.wait_for(
                'lifecycle_influx_spool_bytes{writer="influx"}', lambda v: v > 0)
            found["breaker"] = prometheus.wait_for(
                'lifecycle_influx_breaker_state{writer="influx"}', lambda v: v >= 0)
            return found

        found = await anyio.to_thread.run_sync(scraped)
    assert found["accepted"] == 250
    assert found["spooled"] == 250
    assert {o: int(found[o]) for o in OUTCOMES} == {o: getattr(writer.stats, o) for o in OUTCOMES}
    assert found["breaker"] == 0  # closed: spool-only mode never sends
    assert sup.report.restarts and sup.report.restarts[0].service == "flaky"
    assert [t["health"] for t in prometheus.targets()] == ["up"]
