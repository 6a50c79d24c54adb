"""The incident state reaches the HTTP probes: a real HealthServer on loopback, real time."""

from __future__ import annotations

from typing import Any

import aiohttp
import anyio
import pytest

from lifecycle import Health, RestartPolicy, Service, Supervisor
from lifecycle.adapters.http import HealthServer
from lifecycle.events import Event

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # aiohttp


class Switch(Service):
    """Healthy while ``broken`` is False; the test flips it."""

    check_interval = 0.02
    check_timeout = 1.0
    failure_threshold = 1
    grace_period = 0.0
    cooldown = 0.1

    def __init__(self) -> None:
        super().__init__(name="store", restart=RestartPolicy(max_recoveries=1, then="give_up",
                                                             stable_period=3600.0))
        self.broken = True
        self.heal = True

    async def check(self) -> Health:
        return Health(not self.broken, "broken" if self.broken else "")

    async def recover(self) -> None:
        self.broken = not self.heal


async def get(session: aiohttp.ClientSession, server: HealthServer, path: str) -> tuple[int, Any]:
    async with session.get(f"{server.url}{path}") as resp:
        return resp.status, await resp.json()


async def test_probes_show_recovering_then_escalated() -> None:
    store = Switch()
    server = HealthServer("127.0.0.1", 0)
    sup = Supervisor([server, store], leak_check=False, log_report=False)
    seen = {kind: anyio.Event() for kind in ("AllStarted", "ServiceRecovering", "ServiceEscalated")}

    def on_event(event: Event) -> None:
        if event.kind in seen:
            seen[event.kind].set()

    sup.subscribe(on_event)
    async with anyio.create_task_group() as tg, aiohttp.ClientSession() as session:
        tg.start_soon(lambda: sup.serve(handle_signals=False))
        with anyio.fail_after(30):
            await seen["ServiceRecovering"].wait()
            while store.broken or not sup.health()["services"]["store"]["healthy"]:
                await anyio.sleep(0.02)  # polling the state the probe reads, not a time guess
        # healed, but not healthy for the stable period yet: still recovering, not ready
        status, body = await get(session, server, "/readyz")
        view = body["services"]["store"]
        assert status == 503 and not body["ready"]
        assert view["recovering"] and view["incident_recoveries"] == 1 and view["healthy"]
        assert not view["escalated"]
        store.heal = False
        store.broken = True  # relapses: with max_recoveries=1 the next trigger escalates
        with anyio.fail_after(30):
            await seen["ServiceEscalated"].wait()
        status, body = await get(session, server, "/readyz")
        view = body["services"]["store"]
        assert status == 503 and view["state"] == "failed" and view["escalated"]
        assert view["escalation"].startswith("1 recovery of 'store' did not restore health")
        status, body = await get(session, server, "/livez")
        assert status == 200  # give_up: the app keeps serving, degraded
        sup.request_shutdown("test over")
    assert sup.report.counts["store"].escalations == 1
