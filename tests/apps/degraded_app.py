"""One instance of a two-instance deployment behind a PostgreSQL -> SQLite fallback chain,
for tests/test_db_degraded_processes.py: ``python -m lifecycle run tests.apps.degraded_app:app``.

Environment: ``DATABASE_URL``, ``APP_SQLITE`` (this instance's own file), ``APP_HEALTH_PORT``,
``APP_DEGRADED_READY`` (``0`` or ``1``), ``APP_RECHECK`` (seconds).
"""

from __future__ import annotations

import os

from lifecycle import Fallback, Supervisor
from lifecycle.adapters.http import HealthServer
from lifecycle.adapters.postgres import PostgresDatabase
from lifecycle.adapters.sqlite import SQLiteDatabase


def app() -> Supervisor:
    db = Fallback(
        "db",
        PostgresDatabase.from_env(start_timeout=3.0, close_timeout=1.0),
        SQLiteDatabase(os.environ["APP_SQLITE"]),
        degraded_ready=os.environ.get("APP_DEGRADED_READY", "1") == "1",
        recheck=float(os.environ.get("APP_RECHECK", "0.3")),
        on_recovered="restart",
    )
    health = HealthServer("127.0.0.1", int(os.environ["APP_HEALTH_PORT"]))
    return Supervisor([db, health], shutdown_timeout=10.0, name="degraded-app")
