"""The Postgres pool's size, connections in use and waiting acquirers, against a real
PostgreSQL, as ``lifecycle_db_pool_*`` metrics."""

from __future__ import annotations

import anyio
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from lifecycle import Supervisor
from lifecycle.adapters.postgres import PostgresDatabase
from lifecycle.metrics import exposition
from tests.servers.postgres import PostgresServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # asyncpg


def pool_metrics(sup: Supervisor) -> dict[str, float]:
    body, _ = exposition(sup, registry=CollectorRegistry())
    return {s.name: s.value for f in text_string_to_metric_families(body.decode())
            for s in f.samples if s.name.startswith("lifecycle_db_pool_")
            and s.labels == {"service": "db"}}


async def test_pool_size_in_use_and_waiting_acquirers_are_exposed(postgres: PostgresServer) -> None:
    db = PostgresDatabase(postgres.dsn, name="db", min_size=1, max_size=2, acquire_timeout=20.0)
    sup = Supervisor([db], shutdown_timeout=10.0)
    async with sup:
        assert pool_metrics(sup) == {"lifecycle_db_pool_size": 1.0,
                                     "lifecycle_db_pool_in_use": 0.0,
                                     "lifecycle_db_pool_waiting": 0.0,
                                     "lifecycle_db_pool_max_size": 2.0}
        release = anyio.Event()
        held = 0
        both_held = anyio.Event()

        async def hold() -> None:
            nonlocal held
            async with db.acquire():
                held += 1
                if held == 2:
                    both_held.set()
                await release.wait()

        async with anyio.create_task_group() as tg:
            tg.start_soon(hold)
            tg.start_soon(hold)
            with anyio.fail_after(20):
                await both_held.wait()
            tg.start_soon(hold)  # the third one waits: max_size is 2
            with anyio.fail_after(20):
                while (db.pool_stats()["in_use"], db.pool_stats()["waiting"]) != (2, 1):
                    await anyio.sleep(0.01)  # the waiter enters asyncpg's queue
            assert pool_metrics(sup) == {"lifecycle_db_pool_size": 2.0,
                                         "lifecycle_db_pool_in_use": 2.0,
                                         "lifecycle_db_pool_waiting": 1.0,
                                         "lifecycle_db_pool_max_size": 2.0}
            release.set()
        assert db.pool_stats()["in_use"] == db.pool_stats()["waiting"] == 0
