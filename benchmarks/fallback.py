"""Fallback: time until the app runs on SQLite when PostgreSQL is not there.

``Fallback("db", PostgresDatabase(dsn, start_timeout=1.0), SQLiteDatabase(path))`` under a
``Supervisor``; the clock runs over ``await sup.__aenter__()``, i.e. until the winning
candidate is running. Refused: the DSN points at a closed port. Blackhole: at a listener
that accepts TCP and never answers (a dead proxy), so the Postgres candidate can only be
abandoned by its ``start_timeout``: the goal is SQLite running within 100 ms after it.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import anyio

from benchmarks import Result, Size, ratio, summarize
from benchmarks._clock import Clock
from benchmarks._harness import measure
from benchmarks._servers import Pool, using

NAME = "fallback"
TITLE = "Fallback: PostgreSQL unavailable → SQLite"
START_TIMEOUT = 1.0  # the Postgres candidate's

SUBJECTS = {
    "SQLite alone (reference)": "`Supervisor([SQLiteDatabase(path)])`: what starting SQLite "
                                "costs by itself.",
    "refused → SQLite": "the chain, DSN to a closed port (connection refused).",
    "blackhole → SQLite": "the chain, DSN to a blackhole; the ratio is to the Postgres "
                          "candidate's 1 s `start_timeout`.",
    "PostgreSQL up": "the chain against a running PostgreSQL: the pool (`min_size=1`) is "
                     "created and Postgres wins.",
    "Cloud SQL unreachable → SQLite": "the chain with a `CloudSQLDatabase` (the real Cloud SQL "
                                      "connector, no network here) first; the ratio is to its "
                                      "1 s `start_timeout`.",
}
CLOUD_SQL = "cloudsql:"  # the marker for the Cloud SQL case in place of a DSN


def _candidate(dsn: str) -> Any:
    """The preferred candidate: a PostgresDatabase on ``dsn``, or a CloudSQLDatabase."""
    if dsn == CLOUD_SQL:
        from google.oauth2.credentials import Credentials

        from lifecycle.adapters.cloudsql import CloudSQLDatabase

        return CloudSQLDatabase("bench:region:instance", user="bench", db="bench",
                                password="bench-secret", start_timeout=START_TIMEOUT,
                                credentials=Credentials(  # type: ignore[no-untyped-call]
                                    token="not-a-real-token"))
    from lifecycle.adapters.postgres import PostgresDatabase

    return PostgresDatabase(dsn, start_timeout=START_TIMEOUT)


def _sizes(size: Size) -> int:
    """repeats."""
    return 5 if size == "full" else 1


def _dsn(host: str, port: int) -> str:
    return f"postgresql://bench:bench-secret@{host}:{port}/bench"


def sample_chain(dsn: str | None) -> dict[str, Any]:
    from lifecycle import Fallback, Service, Supervisor
    from lifecycle.adapters.sqlite import SQLiteDatabase

    async def main() -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as root:
            lite = SQLiteDatabase(os.path.join(root, "app.db"))
            service: Service = lite
            if dsn is not None:
                service = Fallback("db", _candidate(dsn), lite)
            sup = Supervisor([service], shutdown_timeout=10.0)
            with Clock() as clock:
                await sup.__aenter__()
            winner = sup["db" if dsn is not None else "sqlite"].name
            await sup.__aexit__(None, None, None)
        record = sup.report.startup["db" if dsn is not None else "sqlite"]
        attempts = {a.candidate: a.elapsed for a in record.attempts}
        return {"value": clock.elapsed, "winner": winner,
                **{f"{k}_ms": v * 1000 for k, v in attempts.items()}}

    return anyio.run(main)


def run(size: Size, pool: Pool | None = None) -> list[Result]:
    repeats = _sizes(size)
    rows: dict[str, Any] = {}
    with using(pool) as servers:
        cases: list[tuple[str, str | None]] = [
            ("SQLite alone (reference)", None),
            ("refused → SQLite", _dsn(*servers.get_closed_port())),
            ("blackhole → SQLite", _dsn(*servers.get_blackhole())),
            ("PostgreSQL up", servers.get_postgres().dsn),
            ("Cloud SQL unreachable → SQLite", CLOUD_SQL),
        ]
        for subject, dsn in cases:
            slow = subject.startswith(("blackhole", "Cloud SQL"))
            samples = measure(f"{__name__}:sample_chain", dsn=dsn, repeats=repeats,
                              warmup=1 if size == "full" and not slow else 0, timeout=120.0)
            rows[subject] = (summarize(samples.values), samples.extra)
    ref = rows["SQLite alone (reference)"][0].median
    results = []
    for subject, (st, extra) in rows.items():
        goal, met, rel = "", None, ratio(st.median, ref)
        if subject == "refused → SQLite":
            goal, met = "< 50 ms", st.median < 0.050
        elif subject in ("blackhole → SQLite", "Cloud SQL unreachable → SQLite"):
            goal = f"≤ start_timeout ({START_TIMEOUT:g} s) + 100 ms"
            met, rel = st.median <= START_TIMEOUT + 0.100, st.median / START_TIMEOUT
        note = f"winner: {extra.get('winner', '?')}"
        if "postgres_ms" in extra and subject != "PostgreSQL up":
            note += f"; the Postgres attempt took {extra['postgres_ms']:.0f} ms"
        if "cloudsql_ms" in extra:
            note += f"; the Cloud SQL attempt took {extra['cloudsql_ms']:.0f} ms"
        results.append(Result(NAME, subject, st.median * 1000, "ms", rel, goal, met,
                              st.best * 1000, st.n, note=note))
    return results
