"""uvicorn, driven piece by piece: its protocols and connection table, never ``Server.serve()``.

``serve()`` would install its own SIGINT/SIGTERM handlers (and re-raise the signal on exit),
``sys.exit`` on a taken port or a failed lifespan, and close without a drain. Here the
service binds the socket, runs the lifespan, and hands uvicorn's HTTP protocol a server
created on that socket; the close uses the same calls as uvicorn's own ``shutdown()``
(``connection.shutdown()``, then waiting for its connections and tasks), one stage at a time.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable
from email.utils import formatdate
from typing import Any

import anyio
import uvicorn
from uvicorn.server import ServerState

from ._asgi import ASGIBackend
from ._base import until
from ._lifespan import ASGIApp, Lifespan


class UvicornBackend(ASGIBackend):
    def __init__(self, app: ASGIApp, lifespan: str, options: dict[str, Any]) -> None:
        settings = {"log_config": None, "access_log": False, **options, "lifespan": "off"}
        self.config = uvicorn.Config(app, **settings)
        self.config.load()
        super().__init__(Lifespan(self.config.loaded_app, lifespan))
        self.state = ServerState()
        self._ticker: asyncio.TimerHandle | None = None

    def tasks(self) -> Iterable[asyncio.Task[Any]]:
        return list(self.state.tasks)

    async def open(self, sock: socket.socket) -> None:
        await self.lifespan.startup()
        loop = asyncio.get_running_loop()
        config, state, app_state = self.config, self.state, self.lifespan.state

        def protocol() -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=state, app_state=app_state, _loop=loop)

        self._tick()
        self.server = await loop.create_server(protocol, sock=sock, backlog=config.backlog)

    def _tick(self) -> None:
        """The Date header uvicorn's main loop would refresh once a second."""
        date = formatdate(usegmt=True).encode()
        self.state.default_headers = [(b"date", date), *self.config.encoded_headers]
        self._ticker = asyncio.get_running_loop().call_later(1.0, self._tick)

    def _http(self) -> list[Any]:
        return [c for c in self.state.connections if isinstance(c, self.config.http_protocol_class)]

    async def finish_requests(self) -> None:
        for connection in self._http():
            connection.shutdown()  # idle: closed now; busy: closed after its response
        await until(lambda: not self._http())

    async def close_connections(self, grace: float) -> str | None:
        for connection in list(self.state.connections):
            connection.shutdown()  # websockets get close code 1012 (service restart)
        with anyio.move_on_after(grace):
            await until(lambda: not self.state.connections and not self.state.tasks)
        left = list(self.state.connections)
        for connection in left:
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()
        return await self.cut(grace, len(left))

    async def abort(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        await super().abort()
