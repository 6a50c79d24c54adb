"""Web servers as services: an ASGI app on uvicorn or hypercorn, or an aiohttp.web app.

One line declares a server that the supervisor starts, drains and closes::

    ASGIService(app, "0.0.0.0", 8000)                       # uvicorn (extra web-uvicorn)
    ASGIService(app, port=8000, server="hypercorn")          # extra web-hypercorn
    AioHTTPService(make_app, port=8080)                      # extra http

- ``start()`` binds the port (a taken port is a start failure naming the address, usable
  in a ``Fallback``; ``port=0`` takes a free one: ``.port`` and ``.url`` tell which), runs
  the app's startup (ASGI lifespan, aiohttp ``on_startup``) under ``start_timeout``, and
  serves.
- The process's signals belong to the supervisor: no server installs handlers or exits.
- ``/livez``, ``/readyz`` and ``/startupz`` answer on the same port, before the app's routes
  (``probes=False`` turns them off, a mapping moves them; see ``probes``).
- The close runs after the drain, in four reported stages: ``stop_accepting``,
  ``finish_requests`` (``graceful_timeout``), ``close_connections`` and
  ``lifespan_shutdown`` (``lifespan_timeout``). See docs/web.md for the timeline.

asyncio only: uvicorn and aiohttp run on asyncio, and so does the hypercorn driver here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lifecycle import ConfigError

from ._base import Backend, ConnectionsCut, WebService
from ._lifespan import ASGIApp, LifespanFailed
from .probes import PROBES, ProbeApp, ProbeResponse, probe_routes, with_probes

__all__ = [
    "PROBES",
    "ASGIService",
    "AioHTTPService",
    "ConnectionsCut",
    "LifespanFailed",
    "ProbeApp",
    "ProbeResponse",
    "WebService",
    "probe_routes",
    "with_probes",
]

SERVERS = ("uvicorn", "hypercorn")
LIFESPAN_MODES = ("auto", "on", "off")


class ASGIService(WebService):
    """An ASGI 3 app (FastAPI, Starlette, ...) served by uvicorn or hypercorn.

    ``lifespan``: ``"auto"`` (an app that raises before asking for the startup event has no
    lifespan), ``"on"`` or ``"off"``. ``server_options``: keywords for ``uvicorn.Config`` or
    attributes of ``hypercorn.config.Config`` (``timeout_keep_alive``, ``h11_max_incomplete_size``,
    ...); the server's own lifespan, logging set-up and signal handling stay off.
    """

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1", port: int = 8000, *,
                 server: str = "uvicorn", lifespan: str = "auto",
                 probes: bool | Mapping[str, str | None] = True, graceful_timeout: float = 10.0,
                 lifespan_timeout: float = 5.0, backlog: int = 1024,
                 server_options: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(host, port, probes=probes, graceful_timeout=graceful_timeout,
                         lifespan_timeout=lifespan_timeout, backlog=backlog, **kwargs)
        if server not in SERVERS:
            raise ConfigError(f"ASGIService {self.name!r}: server must be one of {SERVERS}, "
                              f"got {server!r}")
        if lifespan not in LIFESPAN_MODES:
            raise ConfigError(f"ASGIService {self.name!r}: lifespan must be one of "
                              f"{LIFESPAN_MODES}, got {lifespan!r}")
        if not callable(app):
            raise ConfigError(f"ASGIService {self.name!r}: app must be an ASGI app, got {app!r}")
        self.app = app
        self.server = server
        self.lifespan = lifespan
        self.server_options = dict(server_options or {})

    def _make_backend(self) -> Backend:
        app = with_probes(self.app, lambda: self.supervisor, self.probes)
        if self.server == "uvicorn":
            from ._uvicorn import UvicornBackend

            return UvicornBackend(app, self.lifespan, self.server_options)
        from ._hypercorn import HypercornBackend

        return HypercornBackend(app, self.lifespan, self.server_options)


class AioHTTPService(WebService):
    """An ``aiohttp.web.Application`` (or a factory, sync or async, returning one).

    ``runner_options``: keywords for ``aiohttp.web.AppRunner`` (``access_log``, ...);
    ``handle_signals`` stays off. The probes are a middleware put first in the app's chain.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 8000, *,
                 probes: bool | Mapping[str, str | None] = True, graceful_timeout: float = 10.0,
                 lifespan_timeout: float = 5.0, backlog: int = 1024,
                 runner_options: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(host, port, probes=probes, graceful_timeout=graceful_timeout,
                         lifespan_timeout=lifespan_timeout, backlog=backlog, **kwargs)
        if not callable(app) and type(app).__name__ != "Application":
            raise ConfigError(f"AioHTTPService {self.name!r}: app must be an aiohttp "
                              f"web.Application or a factory, got {app!r}")
        self.app = app
        self.runner_options = dict(runner_options or {})
        if "handle_signals" in self.runner_options:
            raise ConfigError(f"AioHTTPService {self.name!r}: the supervisor owns the signals; "
                              "drop handle_signals from runner_options")

    def _make_backend(self) -> Backend:
        from ._aiohttp import AioHTTPBackend

        return AioHTTPBackend(self.app, lambda: self.supervisor, self.probes,
                              self.runner_options)
