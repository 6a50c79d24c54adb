"""The probes for aiohttp.web: a sub-application to mount, or a middleware in front.

``AioHTTPService`` puts the middleware first in the app's chain, so a probe path answers
before any of the app's routes or middlewares. Users who mount the probes themselves use
``app.add_subapp("/health", probes_app(lambda: sup))`` (the probes then answer below
``/health``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from .probes import ProbeHandler, ProbeResponse, probe_routes, resolve

__all__ = ["probes_app", "probes_middleware"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _response(answer: ProbeResponse) -> web.Response:
    # The content type as a header: aiohttp's content_type= refuses one with a charset
    # (Prometheus's text format has one).
    return web.Response(status=answer.status, body=answer.body,
                        headers={"Content-Type": answer.content_type, "Cache-Control": "no-store"})


def probes_app(supervisor: Any, probes: bool | Mapping[str, str | None] = True) -> web.Application:
    """An ``aiohttp.web.Application`` answering the probes (GET and HEAD)."""
    app = web.Application()
    for path, handler in probe_routes(probes).items():
        app.router.add_get(path, _view(supervisor, handler))
    return app


def _view(supervisor: Any, handler: ProbeHandler) -> Handler:
    async def view(request: web.Request) -> web.StreamResponse:
        return _response(handler(resolve(supervisor)))
    return view


def probes_middleware(supervisor: Any, probes: bool | Mapping[str, str | None] = True) -> Any:
    """A middleware answering the probe paths before the app's own handler runs."""
    routes = probe_routes(probes)

    @web.middleware
    async def probe_first(request: web.Request, handler: Handler) -> web.StreamResponse:
        probe = routes.get(request.path) if request.method in ("GET", "HEAD") else None
        if probe is None:
            return await handler(request)
        return _response(probe(resolve(supervisor)))

    return probe_first
