"""A web app under the supervisor: FastAPI on uvicorn (or hypercorn), one line to declare.

- ``db``: ``Fallback("db", PostgresDatabase.from_env(), SQLiteDatabase(...))``;
- ``metrics``: ``InfluxWriter.from_env(...)`` (spool-only without ``INFLUXDB_URL``);
- ``rollup``: a background ``@every`` loop that writes the per-sensor mean to ``metrics``;
- ``web``: ``ASGIService(api, ...)``: ``POST /readings/{sensor}?celsius=..``,
  ``GET /readings``, and ``/livez`` ``/readyz`` ``/startupz`` on the same port.

The web service depends on ``db`` and ``metrics``: it starts after them, and on SIGTERM it
answers ``/readyz`` with 503 for ``drain_delay`` seconds while still serving, then stops
accepting, finishes requests in flight and closes, all before ``db`` and ``metrics`` close.

    python examples/web_app.py --port 8000                # until Ctrl-C or SIGTERM
    python examples/web_app.py --server hypercorn --port 0     # any free port
    python -m lifecycle run examples/web_app.py:app       # the same app under the CLI

The report is printed at the end (``--report-json`` writes it too); the exit code is the
report's. examples/web_app_aiohttp.py is the same app on aiohttp.web.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from lifecycle import Fallback, Service, Supervisor, every
from lifecycle.adapters.db import Database
from lifecycle.adapters.influx import InfluxWriter
from lifecycle.adapters.postgres import PostgresDatabase
from lifecycle.adapters.sqlite import SQLiteDatabase
from lifecycle.adapters.web import ASGIService, WebService
from lifecycle.events import Event
from lifecycle.logs import configure

DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent / "var"
SCHEMA = "CREATE TABLE IF NOT EXISTS readings (at DOUBLE PRECISION, sensor TEXT, celsius DOUBLE PRECISION)"


class Readings:
    """What the handlers do, for either web framework: the web service gives the db and the
    writer (it depends on both, so they run whenever it serves)."""

    def __init__(self) -> None:
        self.web: WebService | None = None

    def _deps(self) -> tuple[Database, InfluxWriter]:
        assert self.web is not None
        db, metrics = self.web.dependency("db"), self.web.dependency("metrics")
        assert isinstance(db, Database) and isinstance(metrics, InfluxWriter)
        return db, metrics

    async def record(self, sensor: str, celsius: float) -> dict[str, Any]:
        db, metrics = self._deps()
        await db.execute("INSERT INTO readings (at, sensor, celsius) VALUES ($1, $2, $3)",
                         time.time(), sensor, celsius)
        metrics.write(f"temperature,sensor={sensor} celsius={celsius}")
        return {"sensor": sensor, "celsius": celsius}

    async def count(self) -> dict[str, Any]:
        db, _ = self._deps()
        return {"readings": int(await db.fetchval("SELECT COUNT(*) FROM readings") or 0)}


class Rollup(Service):
    """The background loop: every second, each sensor's mean goes to ``metrics``."""

    depends_on = ("db", "metrics")

    async def start(self) -> None:
        db = self.dependency("db")
        assert isinstance(db, Database)
        await db.execute(SCHEMA)

    @every(1.0)
    async def publish(self) -> None:
        db, metrics = self.dependency("db"), self.dependency("metrics")
        assert isinstance(db, Database) and isinstance(metrics, InfluxWriter)
        rows = await db.fetch("SELECT sensor, AVG(celsius) AS mean FROM readings GROUP BY sensor")
        metrics.write_many(f"rollup,sensor={r['sensor']} mean={float(r['mean'])}" for r in rows)


def fastapi_app(readings: Readings) -> Any:
    from fastapi import FastAPI

    api = FastAPI(title="readings")
    api.post("/readings/{sensor}")(readings.record)
    api.get("/readings")(readings.count)
    return api


def services(data_dir: Path, web: WebService, readings: Readings) -> list[Service]:
    """Everything but the web framework: shared with the aiohttp variant."""
    readings.web = web
    return [Fallback("db", PostgresDatabase.from_env(start_timeout=5.0),
                     SQLiteDatabase(data_dir / "web_app.db")),
            InfluxWriter.from_env(name="metrics", spool_path=data_dir / "spool" / "web_app"),
            Rollup(), web]


def build(data_dir: Path, *, host: str = "127.0.0.1", port: int = 8000, server: str = "uvicorn",
          drain_delay: float = 2.0) -> Supervisor:
    readings = Readings()
    web = ASGIService(fastapi_app(readings), host, port, server=server, depends_on=("db", "metrics"),
                       graceful_timeout=5.0, lifespan_timeout=3.0)
    return Supervisor(services(data_dir, web, readings), drain_delay=drain_delay,
                      shutdown_timeout=30.0, name="web_app", log_report=False)


def app() -> Supervisor:
    """For ``python -m lifecycle run examples/web_app.py:app``: ``WEB_DATA_DIR``,
    ``WEB_HOST``, ``WEB_PORT``, ``WEB_SERVER`` and ``WEB_DRAIN`` from the environment."""
    env = os.environ
    return build(Path(env.get("WEB_DATA_DIR", DEFAULT_DATA_DIR)), host=env.get("WEB_HOST", "0.0.0.0"),
                 port=int(env.get("WEB_PORT", "8000")), server=env.get("WEB_SERVER", "uvicorn"),
                 drain_delay=float(env.get("WEB_DRAIN", "5")))


def run(sup: Supervisor, argv: list[str] | None, doc: str) -> int:
    """The command line both variants share: run until a signal, print the report."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--report-json", type=Path, help="also write the report as JSON here")
    args, _ = parser.parse_known_args(argv)
    configure("text", logging.INFO)
    web = next(s for s in sup.services if isinstance(s, WebService))

    def announce(event: Event) -> None:
        if event.kind == "AllStarted":
            print(f"serving on {web.url} (probes: {web.url}/readyz)", flush=True)

    sup.subscribe(announce)
    report = sup.run()
    print(report.format(), flush=True)
    if args.report_json:
        args.report_json.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    return int(report.exit_code)


def options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0: any free port")
    parser.add_argument("--server", choices=("uvicorn", "hypercorn"), default="uvicorn")
    parser.add_argument("--drain", type=float, default=2.0, help="drain_delay in seconds")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    return parser.parse_known_args(argv)[0]


def main(argv: list[str] | None = None) -> int:
    opts = options(argv)
    sup = build(opts.data_dir, host=opts.host, port=opts.port, server=opts.server,
                drain_delay=opts.drain)
    return run(sup, argv, __doc__ or "")


if __name__ == "__main__":
    sys.exit(main())
