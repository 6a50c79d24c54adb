"""``HealthServer``: Kubernetes-style probes over HTTP (aiohttp; the ``http`` extra).

- ``GET /livez``: 200 while the supervisor is alive (starting, serving, or closing); 503
  when it is not (a kubelet then restarts the container).
- ``GET /readyz``: 200 only while every required service runs (optional ones do not count),
  none is in a health incident, and shutdown has not begun; 503 before startup finished,
  and from the moment shutdown is requested (through ``drain_delay``, while load
  balancers take the pod out of rotation).
- ``GET /startupz``: 200 once startup completed (it stays 200 through the close).
- ``GET /metrics``: Prometheus metrics (``lifecycle_*`` and the process's default registry;
  needs the ``metrics`` extra, else 501). See ``docs/observability.md``.

Each body is ``Supervisor.health()`` as JSON plus ``probe`` and ``ok``. HEAD works too.

Why the server answers during the drain: the supervisor waits ``drain_delay`` *before*
stopping any service, so this service is still running then. It has no dependencies, so
it starts with the first services (probes get 503, not "connection refused") and, since
nothing depends on it, it stops in the first wave after the drain. Asyncio only (aiohttp).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from lifecycle import Service
from lifecycle.adapters._listen import cannot_listen, check_port, local_url

__all__ = ["HealthServer"]


class HealthServer(Service):
    """Serves ``/livez``, ``/readyz``, ``/startupz`` and ``/metrics`` for its supervisor.

    ``host`` defaults to ``"0.0.0.0"`` because a kubelet probes the pod's IP, not loopback;
    pass ``"127.0.0.1"`` when only local clients (or systemd-style checks) should reach it.
    ``port=0`` binds an ephemeral port; :attr:`port` tells which, once started.
    """

    name = "health"
    start_timeout = 5.0
    stop_timeout = 3.0

    def __init__(self, host: str = "0.0.0.0", port: int = 8080, *, access_log: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.requested_port = check_port(port, f"HealthServer {self.name!r}")
        self.host = host
        self.port: int | None = None
        self.access_log = access_log
        self._runner: web.AppRunner | None = None

    def __repr__(self) -> str:
        return f"<HealthServer {self.name!r} {self.state.value} {self.url or self.host}>"

    @property
    def url(self) -> str | None:
        """``http://host:port`` once started (``0.0.0.0`` shown as ``127.0.0.1``)."""
        return local_url(self.host, self.port)

    async def start(self) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(f"HealthServer {self.name!r} needs asyncio: aiohttp does not run "
                               "under trio (run the supervisor with backend='asyncio')") from None
        app = web.Application()
        app.router.add_get("/livez", self._livez)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/startupz", self._startupz)
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0,
                               access_log=self.log if self.access_log else None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.requested_port)
            try:
                await site.start()
            except OSError as exc:
                raise cannot_listen(exc, self.host, self.requested_port) from exc
            self.port = int(runner.addresses[0][1])
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.log.info("health probes on %s/{livez,readyz,startupz}", self.url)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def report_details(self) -> dict[str, Any]:
        return {"url": self.url} if self.url else {}

    # ----- probes -------------------------------------------------------------------------
    def _answer(self, probe: str, ok: bool) -> web.Response:
        body = {"probe": probe, "ok": ok, **self.supervisor.health()}
        return web.Response(status=200 if ok else 503, content_type="application/json",
                            text=json.dumps(body, default=str))

    async def _livez(self, request: web.Request) -> web.Response:
        return self._answer("livez", self.supervisor.alive)

    async def _readyz(self, request: web.Request) -> web.Response:
        return self._answer("readyz", self.supervisor.ready)

    async def _startupz(self, request: web.Request) -> web.Response:
        return self._answer("startupz", self.supervisor.started)

    async def _metrics(self, request: web.Request) -> web.Response:
        try:
            from lifecycle.metrics import exposition

            body, content_type = exposition(self.supervisor, accept=request.headers.get("Accept"))
        except ImportError:
            return web.Response(status=501, text="metrics need prometheus-client "
                                                 "(pip install 'lifecycle-supervisor[metrics]')\n")
        response = web.Response(status=200, body=body)
        response.headers["Content-Type"] = content_type  # it carries its own charset
        return response
