"""A user's database app against the installed wheel: PostgreSQL from DATABASE_URL, else
SQLite (here: else, no server needed). Checked with mypy --strict, then run."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from lifecycle import Fallback, Service, Supervisor
from lifecycle.adapters.db import Database
from lifecycle.adapters.postgres import PostgresDatabase
from lifecycle.adapters.sqlite import SQLiteDatabase


class Counter(Service):
    depends_on = ("db",)

    async def run(self) -> None:
        db = self.dependency("db", Database)  # typed: no cast, checked at run time
        await db.execute("CREATE TABLE IF NOT EXISTS hits (n INTEGER)")
        await db.execute("INSERT INTO hits (n) VALUES ($1)", 1)
        count: int = await db.fetchval("SELECT count(*) FROM hits")
        print(f"typed db app: {count} row(s) via {db.name}")
        self.request_shutdown("done")


def main(folder: Path) -> int:
    db = Fallback("db", PostgresDatabase.from_env(environ={}), SQLiteDatabase(folder / "app.db"))
    sup = Supervisor([db, Counter()], shutdown_timeout=10.0, log_report=False)
    report = sup.run()
    return report.exit_code


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        sys.exit(main(Path(tmp)))
