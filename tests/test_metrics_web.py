"""``/metrics`` on the web services' own port (uvicorn, hypercorn, aiohttp.web), over HTTP,
parsed by ``prometheus_client``'s own parser; and moved or removed like a probe."""

from __future__ import annotations

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lifecycle import Supervisor
from tests.webapps import SERVERS, Signals, make_service

pytestmark = pytest.mark.anyio
TIMEOUT = aiohttp.ClientTimeout(total=30)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize("server", SERVERS)
async def test_every_web_server_serves_the_metrics_on_its_own_port(server: str) -> None:
    web = make_service(server, Signals())
    sup = Supervisor([web], shutdown_timeout=20.0)
    async with sup, aiohttp.ClientSession(timeout=TIMEOUT) as session:
        async with session.get(f"{web.url}/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            body = await resp.text()
        async with session.get(f"{web.url}/") as resp:
            assert resp.status == 200  # the app itself still answers
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(body) for s in family.samples}
    assert samples[("lifecycle_service_up", (("service", "web"),))] == 1.0
    assert samples[("lifecycle_ready", ())] == 1.0


async def test_the_metrics_path_moves_and_goes_away_like_a_probe() -> None:
    moved = make_service("aiohttp", Signals(), probes={"metrics": "/internal/metrics"})
    gone = make_service("uvicorn", Signals(), name="quiet", probes={"metrics": None})
    sup = Supervisor([moved, gone], shutdown_timeout=20.0)
    async with sup, aiohttp.ClientSession(timeout=TIMEOUT) as session:
        async with session.get(f"{moved.url}/internal/metrics") as resp:
            assert resp.status == 200 and "lifecycle_service_up" in await resp.text()
        async with session.get(f"{gone.url}/metrics") as resp:
            assert "lifecycle_service_up" not in await resp.text()  # the app's own 404
