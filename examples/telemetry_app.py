"""The demo: a telemetry app that degrades gracefully and shuts down cleanly.

- ``db``: ``Fallback("db", PostgresDatabase.from_env(), SQLiteDatabase(...))``: PostgreSQL
  when ``DATABASE_URL`` is set and answers, otherwise a SQLite file;
- ``metrics``: ``InfluxWriter.from_env(...)``: InfluxDB when ``INFLUXDB_URL`` is set,
  otherwise (or while the server is down) points go to a durable spool on disk;
- ``sensors``: an ``@every`` loop writing each reading to the db and to the writer;
- ``health``: ``/livez``, ``/readyz``, ``/startupz`` over HTTP.

    python examples/telemetry_app.py                    # until Ctrl-C (twice: force)
    python examples/telemetry_app.py --seconds 10       # then shut down by itself
    python -m lifecycle run examples/telemetry_app.py:app   # the same app under the CLI

Data goes under ``--data-dir`` (default: ``var/`` in the repository, git-ignored). The
lifecycle report is printed at the end; the exit code is the report's.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

from lifecycle import Fallback, Service, Stage, Supervisor, every
from lifecycle.adapters.db import Database
from lifecycle.adapters.http import HealthServer
from lifecycle.adapters.influx import InfluxWriter
from lifecycle.adapters.postgres import PostgresDatabase
from lifecycle.adapters.sqlite import SQLiteDatabase
from lifecycle.events import Event
from lifecycle.logs import configure

DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent / "var"
SENSORS = ("boiler", "intake", "exhaust")


class Sensors(Service):
    """Samples a few (simulated) sensors every half second into the db and the writer."""

    depends_on = ("db", "metrics")
    stop_stages = (Stage("summarize", 2.0),)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.temperature = dict.fromkeys(SENSORS, 20.0)
        self.samples = 0
        self._summary: dict[str, Any] = {}

    async def start(self) -> None:
        db = self.dependency("db")
        assert isinstance(db, Database)
        await db.execute("CREATE TABLE IF NOT EXISTS readings "
                         "(at DOUBLE PRECISION, sensor TEXT, celsius DOUBLE PRECISION)")

    @every(0.5, immediate=True)
    async def sample(self) -> None:
        db, metrics = self.dependency("db"), self.dependency("metrics")
        assert isinstance(db, Database) and isinstance(metrics, InfluxWriter)
        now = time.time()
        for name in SENSORS:  # a random walk stands in for real hardware
            self.temperature[name] += random.uniform(-0.5, 0.5)
        rows = [(now, name, round(t, 3)) for name, t in self.temperature.items()]
        await db.executemany("INSERT INTO readings (at, sensor, celsius) VALUES ($1, $2, $3)", rows)
        metrics.write_many(f"temperature,sensor={name} celsius={t}" for _, name, t in rows)
        self.samples += 1

    async def summarize(self) -> None:
        """The last stop stage: what the run left in the database."""
        db = self.dependency("db")
        assert isinstance(db, Database)
        rows = await db.fetchval("SELECT COUNT(*) FROM readings")
        self._summary = {"samples": self.samples, "rows_in_db": int(rows or 0)}

    def report_details(self) -> dict[str, Any]:
        return self._summary


class StopAfter(Service):
    """Ends the app after ``seconds`` (how a bounded run asks for its own shutdown)."""

    def __init__(self, seconds: float, **kwargs: Any) -> None:
        super().__init__(name="stop_after", **kwargs)
        self.seconds = seconds

    async def run(self) -> None:
        if await self.sleep(self.seconds):
            self.request_shutdown(f"ran for {self.seconds:g}s")
        await self.wait_shutdown()


def build(data_dir: Path, *, health_host: str = "0.0.0.0", health_port: int = 8080,
          seconds: float | None = None, log_report: bool = True) -> Supervisor:
    services: list[Service] = [
        HealthServer(health_host, health_port),
        Fallback("db", PostgresDatabase.from_env(start_timeout=5.0),
                 SQLiteDatabase(data_dir / "telemetry.db")),
        InfluxWriter.from_env(name="metrics", spool_path=data_dir / "spool" / "metrics"),
        Sensors(),
    ]
    if seconds is not None:
        services.append(StopAfter(seconds))
    return Supervisor(services, shutdown_timeout=20.0, name="telemetry", log_report=log_report)


def app() -> Supervisor:
    """For ``python -m lifecycle run examples/telemetry_app.py:app``: configured from the
    environment (``TELEMETRY_DATA_DIR``, ``HEALTH_HOST``, ``HEALTH_PORT``)."""
    return build(Path(os.environ.get("TELEMETRY_DATA_DIR", DEFAULT_DATA_DIR)),
                 health_host=os.environ.get("HEALTH_HOST", "0.0.0.0"),
                 health_port=int(os.environ.get("HEALTH_PORT", "8080")))


def summary(sup: Supervisor) -> list[str]:
    report = sup.report
    lines = []
    db = report.startup.get("db")
    if db is not None:
        tried = " -> ".join(f"{a.candidate} {a.outcome}" + (f" ({a.error})" if a.error else "")
                            for a in db.attempts)
        lines.append(f"db: {db.winner or db.outcome}  [{tried}]")
    m = report.details.get("metrics", {})
    if m:
        lines.append(f"metrics ({m.get('mode')}): accepted {m.get('accepted')}, written "
                     f"{m.get('written')}, in spool {m.get('in_spool')}, dropped "
                     f"{m.get('dropped')}  [spool: {m.get('spool')}]")
    s = report.details.get("sensors", {})
    if s:
        lines.append(f"sensors: {s['samples']} samples, {s['rows_in_db']} rows in the db")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, help="run this long, then shut down "
                        "(default: until Ctrl-C or SIGTERM)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help="where the SQLite file and the spool live (default: %(default)s)")
    parser.add_argument("--health-host", default="127.0.0.1")
    parser.add_argument("--health-port", type=int, default=0, help="0: any free port")
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    parser.add_argument("--report-json", type=Path, help="also write the report as JSON here")
    args = parser.parse_args()
    configure(args.log_format, logging.INFO)

    sup = build(args.data_dir, health_host=args.health_host, health_port=args.health_port,
                seconds=args.seconds, log_report=False)  # printed below instead

    def announce(event: Event) -> None:
        if event.kind == "AllStarted":
            url = sup["health"].url  # type: ignore[attr-defined]
            print(f"health probes: {url}/readyz  (Ctrl-C to stop)", flush=True)

    sup.subscribe(announce)
    report = sup.run()
    print(report.format())
    print("\n" + "\n".join(summary(sup)))
    if args.report_json:
        args.report_json.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return int(report.exit_code)


if __name__ == "__main__":
    sys.exit(main())
