"""aiohttp.web through its ``AppRunner`` and a ``SockSite`` on the service's socket.

The runner never handles signals (``handle_signals=False``); its ``cleanup()`` is split into
the stages: the site stops (``stop_accepting``), idle connections close and
``on_shutdown`` runs while requests finish (``finish_requests``: close websockets there, as
aiohttp documents), the server's ``shutdown(timeout)`` cancels what is left
(``close_connections``), and ``on_cleanup``/``cleanup_ctx`` run last (``lifespan_shutdown``).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
from aiohttp import web

from ._base import cut_summary, until
from .aiohttp_probes import probes_middleware

AppSource = web.Application | Callable[[], "web.Application | Awaitable[web.Application]"]


class AioHTTPBackend:
    def __init__(self, app: AppSource, supervisor: Any,
                 probes: bool | Mapping[str, str | None], options: dict[str, Any]) -> None:
        self.source = app
        self.supervisor = supervisor
        self.probes = probes
        self.options = {"access_log": None, **options}
        self.app: web.Application | None = None
        self.runner: web.AppRunner | None = None
        self.site: web.SockSite | None = None
        self._started = False

    async def _resolve(self) -> web.Application:
        app = self.source if isinstance(self.source, web.Application) else self.source()
        if not isinstance(app, web.Application):
            app = await app
        if not isinstance(app, web.Application):
            raise TypeError(f"the app factory returned {type(app).__name__}, not a web.Application")
        return app

    async def open(self, sock: socket.socket) -> None:
        app = self.app = await self._resolve()
        if self.probes is not False:
            app.middlewares.insert(0, probes_middleware(self.supervisor, self.probes))
        self.runner = web.AppRunner(app, handle_signals=False, **self.options)
        await self.runner.setup()  # on_startup and cleanup_ctx: the app's "lifespan startup"
        self._started = True
        self.site = web.SockSite(self.runner, sock)
        await self.site.start()

    def _server(self) -> web.Server | None:
        return self.runner.server if self.runner is not None else None

    async def stop_accepting(self) -> None:
        if self.site is not None:
            site, self.site = self.site, None
            await site.stop()

    async def finish_requests(self) -> None:
        server = self._server()
        if server is None or self.runner is None:
            return
        server.pre_shutdown()  # idle connections stop waiting; busy ones close after their response
        await self.runner.shutdown()  # the app's on_shutdown (close websockets here)
        await server.shutdown(None)  # every handler to its end (the stage's deadline bounds it)

    async def close_connections(self, grace: float) -> str | None:
        server = self._server()
        if server is None or not server.connections:
            return None
        with anyio.move_on_after(grace):
            await until(lambda: not server.connections)
        return await self._cut(server, grace)

    @staticmethod
    async def _cut(server: web.Server, grace: float) -> str | None:
        """Cancel the handlers still running and close their connections (aiohttp's own
        ``Server.shutdown(timeout)`` would wait ``timeout`` twice, and forever for 0)."""
        left = server.connections
        tasks = [t for c in left if (t := getattr(c, "_task_handler", None)) is not None
                 and not t.done()]
        for task in tasks:
            task.cancel()
        for connection in left:
            connection.force_close()
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        return cut_summary(len(tasks), len(left))

    async def shutdown_lifespan(self) -> None:
        if self.app is not None and self._started:
            self._started = False
            await self.app.cleanup()  # on_cleanup and the exit half of cleanup_ctx

    async def abort(self) -> None:
        if self.site is not None:
            await self.site.stop()
        server = self._server()
        if server is not None:
            await self._cut(server, 0.5)
        await self.shutdown_lifespan()
