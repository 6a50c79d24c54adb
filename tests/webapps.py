"""Apps for the web tests: the same routes on Starlette (ASGI) and aiohttp.web.

``/`` answers at once, ``/slow`` after 1 s, ``/hang`` never, ``/ws`` is a websocket that
ignores the close; each sets ``Signals.entered[route]`` when its handler began, so a test
awaits that instead of sleeping. Lifespan faults: ``lifespan="raise"`` or ``"hang"``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from aiohttp import web
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from lifecycle.adapters.web import AioHTTPService, ASGIService, WebService

SERVERS = ("uvicorn", "hypercorn", "aiohttp")
ROUTES = ("/", "/slow", "/hang", "/ws")


async def lifespan_steps(app: Any, signals: Signals, lifespan: str) -> AsyncIterator[None]:
    """The app's startup and shutdown, for Starlette's ``lifespan`` and aiohttp's
    ``cleanup_ctx`` alike."""
    if lifespan == "raise":
        raise RuntimeError("the cache warm-up failed")
    if lifespan == "hang":
        await asyncio.sleep(3600)
    signals.lifespan.append("startup")
    yield
    signals.lifespan.append("shutdown")


class Signals:
    def __init__(self) -> None:
        self.entered = {route: asyncio.Event() for route in ROUTES}
        self.lifespan: list[str] = []


def starlette_app(signals: Signals, lifespan: str = "ok") -> Starlette:
    async def home(request: Request) -> PlainTextResponse:
        signals.entered["/"].set()
        return PlainTextResponse("home")

    async def slow(request: Request) -> PlainTextResponse:
        signals.entered["/slow"].set()
        await asyncio.sleep(1.0)
        return PlainTextResponse("slow")

    async def hang(request: Request) -> PlainTextResponse:
        signals.entered["/hang"].set()
        await asyncio.sleep(3600)
        return PlainTextResponse("never")

    async def ws(socket: WebSocket) -> None:
        await socket.accept()
        signals.entered["/ws"].set()
        await asyncio.sleep(3600)  # ignores the close frame

    span = asynccontextmanager(partial(lifespan_steps, signals=signals, lifespan=lifespan))
    return Starlette(routes=[Route("/", home), Route("/slow", slow), Route("/hang", hang),
                             WebSocketRoute("/ws", ws)], lifespan=span)


def aiohttp_app(signals: Signals, lifespan: str = "ok") -> web.Application:
    async def home(request: web.Request) -> web.Response:
        signals.entered["/"].set()
        return web.Response(text="home")

    async def slow(request: web.Request) -> web.Response:
        signals.entered["/slow"].set()
        await asyncio.sleep(1.0)
        return web.Response(text="slow")

    async def hang(request: web.Request) -> web.Response:
        signals.entered["/hang"].set()
        await asyncio.sleep(3600)
        return web.Response(text="never")

    async def ws(request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        signals.entered["/ws"].set()
        await asyncio.sleep(3600)
        return socket

    app = web.Application()
    app.cleanup_ctx.append(partial(lifespan_steps, signals=signals, lifespan=lifespan))
    for path, handler in (("/", home), ("/slow", slow), ("/hang", hang), ("/ws", ws)):
        app.router.add_get(path, handler)
    return app


def make_service(server: str, signals: Signals, lifespan: str = "ok", **kwargs: Any) -> WebService:
    """A web service on a free loopback port, for ``server``."""
    kwargs.setdefault("port", 0)
    if server == "aiohttp":
        return AioHTTPService(lambda: aiohttp_app(signals, lifespan), **kwargs)
    return ASGIService(starlette_app(signals, lifespan), server=server, **kwargs)
