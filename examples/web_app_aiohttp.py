"""examples/web_app.py on aiohttp.web: the same services, the same routes and probes.

    python examples/web_app_aiohttp.py --port 8080
    python -m lifecycle run examples/web_app_aiohttp.py:app
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared parts in web_app.py

from web_app import DEFAULT_DATA_DIR, Readings, options, run, services

from lifecycle import Supervisor
from lifecycle.adapters.web import AioHTTPService


def aiohttp_app(readings: Readings) -> web.Application:
    async def record(request: web.Request) -> web.Response:
        celsius = float(request.query["celsius"])
        return web.json_response(await readings.record(request.match_info["sensor"], celsius))

    async def count(request: web.Request) -> web.Response:
        return web.json_response(await readings.count())

    api = web.Application()
    api.router.add_post("/readings/{sensor}", record)
    api.router.add_get("/readings", count)
    return api


def build(data_dir: Path, *, host: str = "127.0.0.1", port: int = 8080,
          drain_delay: float = 2.0) -> Supervisor:
    readings = Readings()
    server = AioHTTPService(lambda: aiohttp_app(readings), host, port, depends_on=("db", "metrics"),
                            graceful_timeout=5.0, lifespan_timeout=3.0)
    return Supervisor(services(data_dir, server, readings), drain_delay=drain_delay,
                      shutdown_timeout=30.0, name="web_app", log_report=False)


def app() -> Supervisor:
    """For ``python -m lifecycle run examples/web_app_aiohttp.py:app`` (``WEB_*`` variables)."""
    env = os.environ
    return build(Path(env.get("WEB_DATA_DIR", DEFAULT_DATA_DIR)), host=env.get("WEB_HOST", "0.0.0.0"),
                 port=int(env.get("WEB_PORT", "8080")), drain_delay=float(env.get("WEB_DRAIN", "5")))


def main(argv: list[str] | None = None) -> int:
    opts = options(argv)
    return run(build(opts.data_dir, host=opts.host, port=opts.port, drain_delay=opts.drain),
               argv, __doc__ or "")


if __name__ == "__main__":
    sys.exit(main())
