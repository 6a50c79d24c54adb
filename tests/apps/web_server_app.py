"""A web app for the signal and rolling-restart tests and benchmarks.

``python web_server_app.py SERVER PORT DRAIN [STAGES]`` serves on 127.0.0.1:PORT with
SERVER ``uvicorn``, ``hypercorn`` or ``aiohttp`` and ``drain_delay=DRAIN``. Routes: ``/``
(a small answer after 2 ms, like a real handler), ``/slow?s=N`` (N seconds), ``/hang``
(never returns). Prints ``READY <port>`` once serving and the report as JSON when done; the
exit code is the report's.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from lifecycle import Supervisor
from lifecycle.events import Event


def say(line: str) -> None:
    print(line, flush=True)


async def _answer(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return f"ok from {os.getpid()}\n"


def asgi_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def home(request: Request) -> PlainTextResponse:
        return PlainTextResponse(await _answer(0.002))

    async def slow(request: Request) -> PlainTextResponse:
        say(f"SLOW {request.query_params.get('s', '1')}")
        return PlainTextResponse(await _answer(float(request.query_params.get("s", "1"))))

    async def hang(request: Request) -> PlainTextResponse:
        say("HANG")
        return PlainTextResponse(await _answer(3600))

    return Starlette(routes=[Route("/", home), Route("/slow", slow), Route("/hang", hang)])


def aiohttp_app() -> Any:
    from aiohttp import web

    async def home(request: web.Request) -> web.Response:
        return web.Response(text=await _answer(0.002))

    async def slow(request: web.Request) -> web.Response:
        say(f"SLOW {request.query.get('s', '1')}")
        return web.Response(text=await _answer(float(request.query.get("s", "1"))))

    async def hang(request: web.Request) -> web.Response:
        say("HANG")
        return web.Response(text=await _answer(3600))

    app = web.Application()
    app.router.add_get("/", home)
    app.router.add_get("/slow", slow)
    app.router.add_get("/hang", hang)
    return app


def main() -> int:
    from lifecycle.adapters.web import AioHTTPService, ASGIService

    server, port, drain = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    graceful = float(sys.argv[4]) if len(sys.argv) > 4 else 10.0
    if server == "aiohttp":
        web: Any = AioHTTPService(aiohttp_app, port=port, graceful_timeout=graceful)
    else:
        web = ASGIService(asgi_app(), port=port, server=server, graceful_timeout=graceful)
    sup = Supervisor([web], drain_delay=drain, shutdown_timeout=max(25.0, drain + graceful + 8))

    def on_event(event: Event) -> None:
        if event.kind == "AllStarted":
            say(f"READY {web.port}")
        elif event.kind == "ShutdownRequested":
            say("SHUTDOWN")

    sup.subscribe(on_event)
    report = sup.run()
    say(json.dumps(report.to_dict(), default=str))
    return int(report.exit_code)


if __name__ == "__main__":
    sys.exit(main())
