"""Kubernetes probes served on the web app's own port: a table of path -> handler.

Each probe answers ``Supervisor.health()`` as JSON plus ``probe`` and ``ok``, with 200 when
the verdict holds and 503 when not:

- ``/livez``: the supervisor is alive (starting, serving or closing);
- ``/readyz``: everything runs and shutdown has not begun (503 through the drain, which is
  what takes the process out of a load balancer before it stops accepting);
- ``/startupz``: startup completed (it stays 200 through the close).

And ``/metrics``: the supervisor's Prometheus metrics (``lifecycle.metrics.exposition``; the
``metrics`` extra, else 501), in Prometheus's text format.

:data:`PROBES` maps a probe's name to its handler; :func:`probe_routes` turns it into the
path table a server mounts. Add a name there (``/metrics``, say) and every web service and
probe app serves it. The same table is offered as a plain ASGI app (:class:`ProbeApp`), as
ASGI middleware in front of an app (:func:`with_probes`, what ``ASGIService`` mounts), and
for aiohttp as a sub-application or a middleware (``lifecycle.adapters.web.aiohttp_probes``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lifecycle import ConfigError

from ._lifespan import ASGIApp

if TYPE_CHECKING:
    from lifecycle import Supervisor

__all__ = ["PROBES", "ProbeApp", "ProbeResponse", "probe_routes", "with_probes"]


@dataclass(frozen=True)
class ProbeResponse:
    status: int
    body: bytes
    content_type: str = "application/json"


#: A probe reads the supervisor and answers; it must not block (probes run on the loop).
ProbeHandler = Callable[["Supervisor"], ProbeResponse]


def _verdict(probe: str, attribute: str) -> ProbeHandler:
    def answer(sup: Supervisor) -> ProbeResponse:
        ok = bool(getattr(sup, attribute))
        body = {"probe": probe, "ok": ok, **sup.health()}
        return ProbeResponse(200 if ok else 503, json.dumps(body, default=str).encode())
    answer.__name__ = probe
    return answer


def metrics(sup: Supervisor) -> ProbeResponse:
    """``/metrics`` for Prometheus: the ``lifecycle_*`` metrics and the default registry."""
    try:
        from lifecycle.metrics import exposition

        body, content_type = exposition(sup)
    except ImportError:
        return ProbeResponse(501, b"metrics need prometheus-client "
                                  b"(pip install 'lifecycle-supervisor[metrics]')\n", "text/plain")
    return ProbeResponse(200, body, content_type)


#: Probe name -> handler. The default path of a probe is ``/<name>``.
PROBES: dict[str, ProbeHandler] = {
    "livez": _verdict("livez", "alive"),
    "readyz": _verdict("readyz", "ready"),
    "startupz": _verdict("startupz", "started"),
    "metrics": metrics,
}


def probe_routes(probes: bool | Mapping[str, str | None] = True) -> dict[str, ProbeHandler]:
    """The path table: ``True`` serves every probe at ``/<name>``; a mapping moves probes
    (``{"readyz": "/health/ready"}``) or turns one off (``{"livez": None}``); ``False``: none."""
    if probes is False:
        return {}
    paths: dict[str, str | None] = {name: f"/{name}" for name in PROBES}
    if probes is not True:
        if not isinstance(probes, Mapping):
            raise ConfigError(f"probes must be True, False or a mapping name -> path, got {probes!r}")
        for name, path in probes.items():
            if name not in PROBES:
                raise ConfigError(f"probes: unknown probe {name!r} (known: {', '.join(PROBES)})")
            if path is not None and (not isinstance(path, str) or not path.startswith("/")):
                raise ConfigError(f"probes: path of {name!r} must start with '/', got {path!r}")
            paths[name] = path
    routes: dict[str, ProbeHandler] = {}
    for name, path in paths.items():
        if path is None:
            continue
        if path in routes:
            raise ConfigError(f"probes: two probes on the path {path!r}")
        routes[path] = PROBES[name]
    return routes


def resolve(source: Any) -> Supervisor:
    """A probe's supervisor: given as itself, or as a callable returning it (for an app built
    before its supervisor; a web service passes ``lambda: self.supervisor``)."""
    return source() if callable(source) and not hasattr(source, "health") else source  # type: ignore[no-any-return]


def route_path(scope: MutableMapping[str, Any]) -> str:
    """The path below where the app is mounted (ASGI's ``path`` includes ``root_path``)."""
    path, root = str(scope.get("path", "")), str(scope.get("root_path", ""))
    return path[len(root):] if root and path.startswith(root) else path


class ProbeApp:
    """A plain ASGI app answering the probes (GET and HEAD) and 404 for anything else.

    Mount it where you like (``app.mount("/health", ProbeApp(sup))`` in Starlette/FastAPI;
    mounted apps see their path without the prefix, so the probes answer below it).
    """

    def __init__(self, supervisor: Any, probes: bool | Mapping[str, str | None] = True) -> None:
        self.source = supervisor
        self.routes = probe_routes(probes)

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":  # nothing to set up; answer so a mount never fails
            while True:
                kind = (await receive())["type"].rsplit(".", 1)[-1]  # startup | shutdown
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
            return
        if scope["type"] != "http":
            return
        handler = self.routes.get(route_path(scope))
        if handler is None:
            await _send(send, ProbeResponse(404, b'{"error": "no such probe"}'), scope)
        elif scope.get("method") not in ("GET", "HEAD"):
            await _send(send, ProbeResponse(405, b'{"error": "GET or HEAD"}'), scope)
        else:
            await _send(send, handler(resolve(self.source)), scope)


def with_probes(app: ASGIApp, supervisor: Any,
                probes: bool | Mapping[str, str | None] = True) -> ASGIApp:
    """``app`` with the probes answered first: a probe path never reaches the app's routes."""
    routes = probe_routes(probes)
    if not routes:
        return app

    async def probed(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        handler = routes.get(route_path(scope)) if scope["type"] == "http" else None
        if handler is None or scope.get("method") not in ("GET", "HEAD"):
            await app(scope, receive, send)
        else:
            await _send(send, handler(resolve(supervisor)), scope)

    return probed


async def _send(send: Any, response: ProbeResponse, scope: MutableMapping[str, Any]) -> None:
    body = b"" if scope.get("method") == "HEAD" else response.body
    await send({"type": "http.response.start", "status": response.status,
                "headers": [(b"content-type", response.content_type.encode()),
                            (b"content-length", str(len(response.body)).encode()),
                            (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": body})
