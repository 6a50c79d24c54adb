"""hypercorn, driven piece by piece: its ``TCPServer`` per connection, never ``serve()``.

``serve()`` runs startup, serving and the whole close in one coroutine (and installs signal
handlers unless given a ``shutdown_trigger``), so its close could not be split into stages
or reported. Here the service binds the socket and runs the lifespan; each accepted
connection is a hypercorn ``TCPServer`` whose task this backend tracks, and the close sets
hypercorn's ``terminated`` event (connections close after their response, idle keep-alive
connections close) before waiting for them, one stage at a time.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterable
from typing import Any

import anyio
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config
from hypercorn.utils import wrap_app

from ._asgi import ASGIBackend
from ._base import until
from ._lifespan import ASGIApp, Lifespan


def _is_websocket(server: TCPServer) -> bool:
    """Whether a connection was upgraded to a websocket (hypercorn keeps it on the stream)."""
    protocol = getattr(getattr(server, "protocol", None), "protocol", None)
    stream = getattr(protocol, "stream", None)
    return type(stream).__name__ == "WSStream"


class HypercornBackend(ASGIBackend):
    def __init__(self, app: ASGIApp, lifespan: str, options: dict[str, Any]) -> None:
        super().__init__(Lifespan(app, lifespan))
        self.config = Config()
        # hypercorn's own errors (an app's exception) go to the "hypercorn.error" logger,
        # not to a stderr handler of its own: logging is the app's to configure
        defaults = {"errorlog": logging.getLogger("hypercorn.error")}
        for key, value in {**defaults, **options}.items():
            if not hasattr(self.config, key):
                raise TypeError(f"hypercorn Config has no option {key!r}")
            setattr(self.config, key, value)
        self.app = wrap_app(app, self.config.wsgi_max_body_size, "asgi")  # type: ignore[arg-type]
        self.context = WorkerContext(None)
        self.connections: dict[asyncio.Task[Any], TCPServer] = {}

    def tasks(self) -> Iterable[asyncio.Task[Any]]:
        return list(self.connections)

    async def open(self, sock: socket.socket) -> None:
        await self.lifespan.startup()
        loop = asyncio.get_running_loop()

        async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            server = TCPServer(self.app, loop, self.config, self.context, self.lifespan.state,
                               reader, writer)
            self.connections[task] = server
            try:
                await server.run()
            finally:
                self.connections.pop(task, None)

        self.server = await asyncio.start_server(connected, sock=sock, backlog=self.config.backlog)

    def _http(self) -> list[TCPServer]:
        return [s for s in self.connections.values() if not _is_websocket(s)]

    async def finish_requests(self) -> None:
        await self.context.terminated.set()
        await until(lambda: not self._http())

    async def close_connections(self, grace: float) -> str | None:
        # hypercorn has no call to close a websocket from the server side: cancel its task
        # (the TCPServer closes the connection in its finally), as hypercorn's own close does
        # once its graceful_timeout passed.
        with anyio.move_on_after(grace if self._http() else 0):
            await until(lambda: not self._http())
        return await self.cut(grace, len(self.connections))
