"""Web services against real servers (uvicorn, hypercorn, aiohttp.web) on free loopback ports,
talked to over HTTP by a real client."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from functools import partial
from typing import Any

import aiohttp
import anyio
import pytest

from lifecycle import Fallback, StartupError, Supervisor
from lifecycle.adapters.web import ASGIService
from lifecycle.report import LifecycleReport
from tests.webapps import SERVERS, Signals, make_service, starlette_app

STAGES = ["stop_accepting", "finish_requests", "close_connections", "lifespan_shutdown"]
TIMEOUT = aiohttp.ClientTimeout(total=30)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # uvicorn, hypercorn's asyncio driver and aiohttp


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as resp:
        return resp.status, await resp.text()


def outcomes(report: LifecycleReport, service: str = "web") -> dict[str, str]:
    return {stage: rec.outcome for stage, rec in report.shutdown[service].items()}


@pytest.mark.anyio
async def test_the_app_and_the_probes_answer_on_one_port_and_the_close_shows_each_stage(
        server: str) -> None:
    signals = Signals()
    web = make_service(server, signals)
    sup = Supervisor([web], shutdown_timeout=20.0)
    async with sup, aiohttp.ClientSession(timeout=TIMEOUT) as session:
        assert web.port and web.url == f"http://127.0.0.1:{web.port}"
        assert await get(session, web.url + "/") == (200, "home")
        for probe in ("/livez", "/readyz", "/startupz"):
            async with session.get(web.url + probe) as resp:
                assert resp.status == 200
                assert (await resp.json())["probe"] == probe[1:]
    assert signals.lifespan == ["startup", "shutdown"]
    assert list(sup.report.shutdown["web"]) == STAGES
    assert set(outcomes(sup.report).values()) == {"ok"}, sup.report.format()
    assert sup.report.ok, sup.report.format()


@pytest.mark.anyio
async def test_during_the_drain_readyz_says_503_while_the_app_still_serves(server: str) -> None:
    web = make_service(server, Signals())
    sup = Supervisor([web], shutdown_timeout=20.0, drain_delay=1.5)
    async with sup, aiohttp.ClientSession(timeout=TIMEOUT) as session:
        assert (await get(session, web.url + "/readyz"))[0] == 200
        sup.request_shutdown("test")
        closing = asyncio.ensure_future(sup.__aexit__(None, None, None))
        await asyncio.sleep(0)  # the close begins: the drain
        assert (await get(session, web.url + "/readyz"))[0] == 503
        assert await get(session, web.url + "/") == (200, "home")
        await closing
    assert sup.report.ok, sup.report.format()


@pytest.mark.anyio
async def test_a_request_in_flight_when_shutdown_begins_completes_with_200(server: str) -> None:
    signals = Signals()
    web = make_service(server, signals)
    sup = Supervisor([web], shutdown_timeout=20.0)  # no drain: the stages meet the request
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        async with sup:
            slow = asyncio.ensure_future(get(session, web.url + "/slow"))
            await asyncio.wait_for(signals.entered["/slow"].wait(), 10)
            sup.request_shutdown("test")
        assert await slow == (200, "slow")
    assert sup.report.shutdown["web"]["finish_requests"].elapsed > 0.5
    assert sup.report.ok, sup.report.format()


@pytest.mark.anyio
async def test_a_taken_port_is_a_start_failure_naming_the_address(server: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        sup = Supervisor([make_service(server, Signals(), port=port)])
        with pytest.raises(StartupError):
            async with sup:
                pass
    record = sup.report.startup["web"]
    assert record.outcome == "error"
    assert f"cannot listen on 127.0.0.1:{port}" in (record.error or "")
    assert "Address already in use" in (record.error or "")


@pytest.mark.anyio
async def test_a_fallback_moves_to_the_next_port_when_the_first_is_taken() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        first = ASGIService(starlette_app(Signals()), port=port, name="main-port")
        second = ASGIService(starlette_app(Signals()), port=0, name="spare-port")
        sup = Supervisor([Fallback("web", first, second)])
        async with sup, aiohttp.ClientSession(timeout=TIMEOUT) as session:
            assert sup["web"] is second
            assert await get(session, f"{second.url}/") == (200, "home")
    attempts = sup.report.startup["web"].attempts
    assert [a.outcome for a in attempts] == ["error", "ok"]


@pytest.mark.anyio
async def test_a_lifespan_startup_that_raises_is_a_start_failure_with_its_message(server: str) -> None:
    sup = Supervisor([make_service(server, Signals(), lifespan="raise")])
    with pytest.raises(StartupError):
        async with sup:
            pass
    record = sup.report.startup["web"]
    assert record.outcome == "error"
    assert "the cache warm-up failed" in (record.error or ""), record.error
    assert "Traceback" not in (record.error or "")  # the message, not a whole traceback


@pytest.mark.anyio
async def test_a_lifespan_that_hangs_fails_the_start_at_its_deadline_and_frees_the_port(
        server: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    web = make_service(server, Signals(), lifespan="hang", port=port, start_timeout=0.5)
    sup = Supervisor([web])
    began = time.monotonic()
    with pytest.raises(StartupError):
        async with sup:
            pass
    assert time.monotonic() - began < 5.0
    assert sup.report.startup["web"].outcome == "timeout"
    assert "did not finish within 0.5s" in (sup.report.startup["web"].error or "")
    socket.create_server(("127.0.0.1", port)).close()  # released: binds again


async def hang_a_request(session: aiohttp.ClientSession, url: str) -> Any:
    """A request whose handler never returns; its outcome: a status, or the error."""
    try:
        return (await get(session, url + "/hang"))[0]
    except aiohttp.ClientError as exc:
        return exc


async def open_a_websocket(session: aiohttp.ClientSession, url: str) -> Any:
    """A websocket whose handler ignores the close; its outcome: the close it received."""
    ws = await session.ws_connect(url + "/ws")
    try:
        return await asyncio.wait_for(ws.receive(), 30)
    finally:
        await ws.close()


@pytest.mark.anyio
@pytest.mark.parametrize(("route", "client"), [("/hang", hang_a_request), ("/ws", open_a_websocket)],
                         ids=["handler", "websocket"])
async def test_a_handler_or_websocket_that_never_ends_is_cut_within_the_budget_and_named(
        server: str, route: str, client: Any) -> None:
    signals = Signals()
    web = make_service(server, signals, graceful_timeout=0.5)
    sup = Supervisor([web], shutdown_timeout=10.0)
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        async with sup:
            outcome = asyncio.ensure_future(client(session, web.url))
            await asyncio.wait_for(signals.entered[route].wait(), 10)
            began = time.monotonic()
        closed_in = time.monotonic() - began
        result = await outcome
    assert result != 200  # cut: a closed connection, a close frame, or an error status
    assert closed_in < 6.0, sup.report.format()
    stages = outcomes(sup.report)
    assert stages["lifespan_shutdown"] == "ok"
    if server == "aiohttp" and sys.version_info < (3, 11):
        # On 3.10, aiohttp's connection shutdown cancels the handler itself when the
        # finish_requests deadline cancels it, so the cut is named there, not in the next stage
        assert stages["finish_requests"] == "timeout", sup.report.format()
        return
    assert stages["close_connections"] == "error", sup.report.format()
    assert "cancelled 1 handler(s)" in (sup.report.shutdown["web"]["close_connections"].error or "")
    if route == "/hang":
        assert stages["finish_requests"] == "timeout"


@pytest.mark.anyio
async def test_probes_move_to_configured_paths_or_leave_the_path_to_the_app() -> None:
    moved = ASGIService(starlette_app(Signals()), port=0, name="moved",
                        probes={"readyz": "/health/ready", "livez": None})
    bare = ASGIService(starlette_app(Signals()), port=0, name="bare", probes=False)
    sup = Supervisor([moved, bare])
    async with sup, aiohttp.ClientSession(timeout=TIMEOUT) as session:
        assert (await get(session, f"{moved.url}/health/ready"))[0] == 200
        assert (await get(session, f"{moved.url}/livez"))[0] == 404  # the app's 404
        assert (await get(session, f"{moved.url}/startupz"))[0] == 200
        assert (await get(session, f"{bare.url}/readyz"))[0] == 404


@pytest.mark.anyio
async def test_the_probes_mount_as_an_asgi_app_or_an_aiohttp_sub_app() -> None:
    from aiohttp import web
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from lifecycle.adapters.web import AioHTTPService, ProbeApp
    from lifecycle.adapters.web.aiohttp_probes import probes_app

    sup: Supervisor | None = None
    asgi = Starlette(routes=[Mount("/health", ProbeApp(lambda: sup))])
    aio = web.Application()
    aio.add_subapp("/health", probes_app(lambda: sup))
    services = [ASGIService(asgi, port=0, name="asgi", probes=False),
                AioHTTPService(aio, port=0, name="aio", probes=False)]
    sup = Supervisor(services)
    async with sup, aiohttp.ClientSession(timeout=TIMEOUT) as session:
        for svc in services:
            assert (await get(session, f"{svc.url}/health/readyz"))[0] == 200
            assert (await get(session, f"{svc.url}/readyz"))[0] == 404
            async with session.head(f"{svc.url}/health/livez") as resp:
                assert resp.status == 200 and await resp.read() == b""


def test_on_trio_the_start_fails_saying_the_servers_need_asyncio() -> None:
    sup = Supervisor([ASGIService(starlette_app(Signals()), port=0)])
    report = anyio.run(partial(sup.serve, handle_signals=False), backend="trio")
    assert report.startup["web"].outcome == "error"
    assert "runs on asyncio only" in (report.startup["web"].error or "")


def test_a_bad_probe_table_or_server_name_is_a_config_error() -> None:
    from lifecycle import ConfigError

    app = starlette_app(Signals())
    for bad in ({"ready": "/r"}, {"readyz": "r"}, {"readyz": "/x", "livez": "/x"}):
        with pytest.raises(ConfigError):
            ASGIService(app, probes=bad)
    with pytest.raises(ConfigError, match="server must be one of"):
        ASGIService(app, server="daphne")
    with pytest.raises(ConfigError, match="port must be"):
        ASGIService(app, port=70000)

