"""``wait_drained()``: the phase after the drain, for servers that must serve through it."""

from __future__ import annotations

import anyio
import pytest

from lifecycle import Service, Supervisor
from lifecycle._backend import now
from lifecycle._stoptoken import Stop, StopToken


class Server(Service):
    """Serves until the drain is over, noting when each helper returned."""

    def __init__(self) -> None:
        super().__init__(name="server")
        self.seen: dict[str, float] = {}

    async def run(self) -> None:
        await self.wait_shutdown()
        self.seen["shutdown"] = now()
        await self.wait_drained()
        self.seen["drained"] = now()
        await self.wait_drained()  # after the drain it returns at once
        self.seen["again"] = now()

    async def stop(self) -> None:
        self.seen["stop"] = now()


@pytest.mark.anyio
async def test_wait_drained_returns_after_the_drain_and_before_the_stop_stages() -> None:
    server = Server()
    sup = Supervisor([server], drain_delay=0.3, shutdown_timeout=5.0)
    async with sup:
        sup.request_shutdown("test")
    seen = server.seen
    assert seen["drained"] - seen["shutdown"] >= 0.25, seen
    assert seen["again"] <= seen["stop"]
    assert sup.report.ok, sup.report.format()
    assert "tasks" in sup.report.shutdown["server"]  # run() ended by itself after the drain
    assert sup.report.shutdown["server"]["tasks"].outcome == "ok"


@pytest.mark.anyio
async def test_wait_drained_returns_at_once_when_there_is_no_drain() -> None:
    server = Server()
    sup = Supervisor([server], shutdown_timeout=5.0)
    async with sup:
        sup.request_shutdown("test")
    assert set(server.seen) == {"shutdown", "drained", "again", "stop"}
    assert sup.report.ok, sup.report.format()


@pytest.mark.anyio
async def test_wait_drained_is_fresh_after_a_restart() -> None:
    server = Server()
    first = server._stop_token  # what a start attempt hands it; stopped for a restart, drained:
    first.set(Stop.RESTART)
    first.end_drain()
    with anyio.fail_after(1):
        await server.wait_drained()
    server._stop_token = StopToken()  # the restart's attempt brings a fresh token: a new drain
    with anyio.move_on_after(0.05) as scope:
        await server.wait_drained()
    assert scope.cancelled_caught
