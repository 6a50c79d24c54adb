"""HealthServer: real HTTP probes as the supervisor's state changes."""

from __future__ import annotations

import socket
from typing import Any

import aiohttp
import anyio
import pytest

from lifecycle import ConfigError, Service, Supervisor
from lifecycle.adapters.http import HealthServer
from lifecycle.events import Event


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # aiohttp


class Gate(Service):
    """Starts when the test opens the gate."""

    def __init__(self, gate: anyio.Event, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = gate

    async def start(self) -> None:
        await self.gate.wait()


async def probe(session: aiohttp.ClientSession, server: HealthServer,
                path: str) -> tuple[int, dict[str, Any]]:
    async with session.get(f"{server.url}{path}") as resp:
        assert resp.content_type == "application/json"
        return resp.status, await resp.json()


@pytest.mark.anyio
async def test_probes_follow_the_lifecycle() -> None:
    gate = anyio.Event()
    server = HealthServer("127.0.0.1", 0)
    sup = Supervisor([server, Gate(gate, name="db", start_timeout=30.0)], shutdown_timeout=10.0,
                     drain_delay=1.0, name="probed")
    seen: dict[str, anyio.Event] = {k: anyio.Event() for k in
                                    ("health", "AllStarted", "ShutdownRequested")}

    def on_event(event: Event) -> None:
        key = "health" if event.kind == "ServiceStarted" and event.service == "health" else event.kind
        if key in seen:
            seen[key].set()

    sup.subscribe(on_event)
    async with anyio.create_task_group() as tg, aiohttp.ClientSession() as session:
        tg.start_soon(lambda: sup.serve(handle_signals=False))
        with anyio.fail_after(30):
            await seen["health"].wait()
            assert server.port and server.port > 0 and server.url == f"http://127.0.0.1:{server.port}"

            # starting: alive, not ready, not started
            status, body = await probe(session, server, "/livez")
            assert status == 200 and body["alive"] and body["state"] == "starting"
            assert body["probe"] == "livez" and body["name"] == "probed"
            status, body = await probe(session, server, "/readyz")
            assert status == 503 and body["ok"] is False and body["services"]["db"]["state"] == "starting"
            assert (await probe(session, server, "/startupz"))[0] == 503

            gate.set()
            await seen["AllStarted"].wait()
            for path in ("/livez", "/readyz", "/startupz"):
                status, body = await probe(session, server, path)
                assert status == 200, (path, body)
            assert {k: v["state"] for k, v in body["services"].items()} == {
                "health": "running", "db": "running"}
            async with session.head(f"{server.url}/readyz") as resp:
                assert resp.status == 200

            # shutdown: not ready at once, still alive and started during the drain
            sup.request_shutdown("rolling update")
            await seen["ShutdownRequested"].wait()
            status, body = await probe(session, server, "/readyz")
            assert status == 503 and body["shutting_down"] is True and body["ready"] is False
            status, body = await probe(session, server, "/livez")
            assert status == 200 and body["alive"] is True
            assert (await probe(session, server, "/startupz"))[0] == 200
    report = sup.report
    assert report.ok, report.format()
    assert report.stage("health", "stop").outcome == "ok"
    with pytest.raises(OSError):  # the port is closed after the close
        socket.create_connection(("127.0.0.1", server.port), timeout=5).close()


@pytest.mark.anyio
async def test_a_taken_port_fails_the_start_naming_the_address() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        sup = Supervisor([HealthServer("127.0.0.1", port)], shutdown_timeout=5.0)
        with anyio.fail_after(30):
            report = await sup.serve(handle_signals=False)
    finally:
        taken.close()
    assert report.exit_code == 1
    error = report.startup["health"].error or ""
    assert f"cannot listen on 127.0.0.1:{port}" in error
    assert report.leaks is None or report.leaks.ok, report.format()


def test_bad_port_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"port must be 0\.\.65535"):
        HealthServer(port=70000)


def test_defaults_are_for_kubernetes() -> None:
    server = HealthServer()
    assert (server.host, server.requested_port, server.name) == ("0.0.0.0", 8080, "health")
    assert server.depends_on == () and server.url is None
