"""What every web service shares: binding in ``start()``, the staged close, the address.

The close, after the supervisor's drain (readiness went false ``drain_delay`` ago, and the
server kept serving meanwhile), runs four stages, each under its own deadline and each a row
of the report:

1. ``stop_accepting``: the listening socket closes; nothing new connects.
2. ``finish_requests``: requests in flight run to completion, each connection closes after
   its response, idle keep-alive connections close now.
3. ``close_connections``: what is left (websockets, streams, handlers still running) is
   asked to close, given ``close_grace``, then cancelled and cut; what had to be cut is
   named in the stage's error.
4. ``lifespan_shutdown``: the app's own shutdown (ASGI lifespan; aiohttp's ``on_shutdown``
   ran in stage 2, ``on_cleanup``/``cleanup_ctx`` run here).

No server task outlives ``start()``: the servers' listeners and connections are driven by
the event loop, so the supervisor's task wind-down (before the stages) cannot cut them short.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import anyio

from lifecycle import ConfigError, Service, Stage

from .._listen import cannot_listen, check_port, local_url
from .probes import probe_routes

POLL = 0.02  # seconds between looks at a server's connection table (servers offer no event)
CLEANUP_BOUND = 2.0  # how long a failed start may take to release what it made


class ConnectionsCut(RuntimeError):
    """``close_connections`` had to cancel handlers or cut connections that would not end."""


class Backend(Protocol):
    """One server implementation, driven stage by stage."""

    async def open(self, sock: socket.socket) -> None: ...
    async def stop_accepting(self) -> None: ...
    async def finish_requests(self) -> None: ...
    async def close_connections(self, grace: float) -> str | None: ...
    async def shutdown_lifespan(self) -> None: ...
    async def abort(self) -> None: ...


async def until(done: Callable[[], bool]) -> None:
    """Poll ``done`` (the stage's deadline bounds the wait)."""
    while not done():
        await asyncio.sleep(POLL)


def cut_summary(tasks: int, connections: int) -> str | None:
    """The error text of a ``close_connections`` that had to cut, or None."""
    if not tasks and not connections:
        return None
    return (f"cancelled {tasks} handler(s) and cut {connections} connection(s) still open "
            "after finish_requests and a request to close")


def bind(host: str, port: int, backlog: int) -> socket.socket:
    """Listen on (host, port) now, so a taken port is a start failure that says so."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, backlog=backlog)
    except OSError as exc:
        raise cannot_listen(exc, host, port) from None
    sock.setblocking(False)
    return sock


class WebService(Service):
    """Base of ``ASGIService`` and ``AioHTTPService``: see the module docstring."""

    name = "web"
    start_timeout = 10.0
    #: Seconds for each stage; ``finish_requests`` is the ``graceful_timeout`` keyword.
    stop_accepting_timeout = 1.0
    close_connections_timeout = 2.0

    def __init__(self, host: str = "127.0.0.1", port: int = 8000, *,
                 probes: bool | Mapping[str, str | None] = True, graceful_timeout: float = 10.0,
                 lifespan_timeout: float = 5.0, backlog: int = 1024, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        who = f"{type(self).__name__} {self.name!r}"
        self.requested_port = check_port(port, who)
        if not isinstance(host, str) or not host:
            raise ConfigError(f"{who}: host must be a non-empty string, got {host!r}")
        self.host = host
        self.port: int | None = None
        probe_routes(probes)  # validated now: a bad probe table is a ConfigError
        self.probes = probes
        self.backlog = backlog
        self.stop_stages = (Stage("stop_accepting", self.stop_accepting_timeout),
                            Stage("finish_requests", graceful_timeout),
                            Stage("close_connections", self.close_connections_timeout),
                            Stage("lifespan_shutdown", lifespan_timeout))
        self._backend: Backend | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.state.value} {self.url or self.host}>"

    @property
    def url(self) -> str | None:
        """``http://host:port`` once started (a wildcard host shown as loopback)."""
        return local_url(self.host, self.port)

    def _make_backend(self) -> Backend:
        raise NotImplementedError

    async def start(self) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(f"{type(self).__name__} runs on asyncio only (uvicorn, aiohttp and "
                               "the hypercorn driver here): run the supervisor on asyncio") from None
        backend = self._make_backend()  # first: a missing server package leaks no socket
        sock = bind(self.host, self.requested_port, self.backlog)
        try:
            await backend.open(sock)
        except BaseException:
            with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_BOUND):
                await backend.abort()
            sock.close()
            raise
        self._backend = backend
        self.port = int(sock.getsockname()[1])
        self.log.info("serving on %s", self.url)

    # ----- the stop stages ------------------------------------------------------------
    async def stop_accepting(self) -> None:
        if self._backend is not None:
            await self._backend.stop_accepting()

    async def finish_requests(self) -> None:
        if self._backend is not None:
            await self._backend.finish_requests()

    async def close_connections(self) -> None:
        if self._backend is not None:
            cut = await self._backend.close_connections(self.close_connections_timeout / 2)
            if cut:
                raise ConnectionsCut(cut)

    async def lifespan_shutdown(self) -> None:
        backend, self._backend = self._backend, None
        if backend is not None:
            await backend.shutdown_lifespan()

    def report_details(self) -> dict[str, Any]:
        return {"url": self.url} if self.url else {}
