"""Promises of the writer's spool replay, against a real VictoriaMetrics behind the fault
proxy (see "Mutation testing" in docs/testing.md). asyncio only: the online writer is.

Each test first fills the spool with ten rows of 100 points in a spool-only run, then
starts an online writer on the same spool, which replays them.
"""

from __future__ import annotations

import logging
import sqlite3
from functools import partial
from itertools import pairwise
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from lifecycle import Service, Supervisor
from lifecycle.adapters.influx import InfluxWriter
from tests.servers.http_faults import PASS, STALL, FaultProxy, unavailable
from tests.servers.victoria import VictoriaMetrics
from tests.test_influx import count, lines, wait_for, writer

pytestmark = pytest.mark.anyio

ROWS, PER_ROW = 10, 100


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def spooled(w: InfluxWriter, points: int) -> bool:
    return w.stats.in_spool == points


async def fill_spool(spool: Path, tag: str) -> None:
    """Ten rows of 100 points, each written and spooled on its own."""
    offline = writer(None, spool, batch_size=PER_ROW)
    async with Supervisor([offline], shutdown_timeout=15.0):
        for k in range(ROWS):
            offline.write_many(lines(tag, PER_ROW, k * PER_ROW))
            await wait_for(partial(spooled, offline, (k + 1) * PER_ROW), 10, "spooled")
    assert offline.stats.in_spool == ROWS * PER_ROW


async def test_a_failed_replay_delivery_stops_the_replay_and_backs_off(
        victoria: VictoriaMetrics, unique_tag: str, tmp_path: Path) -> None:
    await fill_spool(tmp_path, unique_tag)
    async with FaultProxy(victoria.url, default=unavailable()) as proxy:
        w = writer(proxy.url, tmp_path, batch_size=PER_ROW, max_in_flight=1,
                   breaker_threshold=1000, retry_backoff=(0.5, 0.5))
        async with Supervisor([w], shutdown_timeout=15.0):
            await anyio.sleep(1.2)  # the observation window: replays against a failing server
            seen = list(proxy.seen)
            assert 1 <= len(seen) <= 4, [s.status for s in seen]  # one row a try, 0.5 s apart
            gaps = [b.at - a.at for a, b in pairwise(seen)]
            assert all(gap >= 0.4 for gap in gaps), gaps
            proxy.default = PASS
            await wait_for(lambda: w.stats.inherited_written == ROWS * PER_ROW, 15, "replay")
            assert w.stats.balanced
    assert await count(victoria, unique_tag) == ROWS * PER_ROW


async def test_rows_of_a_replay_cut_short_by_shutdown_stop_counting_against_the_caps(
        victoria: VictoriaMetrics, unique_tag: str, tmp_path: Path) -> None:
    await fill_spool(tmp_path, unique_tag)
    async with FaultProxy(victoria.url, default=STALL) as proxy:
        w = writer(proxy.url, tmp_path, batch_size=PER_ROW, max_in_flight=1, timeout=30.0)
        async with Supervisor([w], shutdown_timeout=15.0):
            # one row stalled at the server, the next read and waiting for the lane
            await wait_for(lambda: proxy.inflight == 1, 10, "a replayed row at the server")
    # The caps count what the writer holds in memory; after the close it holds nothing.
    # (No public surface shows the held count once the writer is closed, hence the
    # buffer's own counters: a leftover would shrink the caps of every later use.)
    buffer = w._buf
    assert (buffer.held_points, buffer.held_bytes) == (0, 0)
    stats = w.stats  # nothing was acknowledged: every row is still in the spool
    assert (stats.inherited, stats.inherited_written, stats.spool_backlog) == (
        ROWS * PER_ROW, 0, ROWS * PER_ROW)


class TableRenamer(Service):
    """Makes the spool's queue unreadable between the writer's start and its first replay
    (services' ``run()`` begins after every start): a real ``sqlite3.OperationalError``."""

    depends_on = ("metrics",)

    def __init__(self, path: Path) -> None:
        super().__init__(name="renamer")
        self.path = path

    async def start(self) -> None:
        await anyio.to_thread.run_sync(rename_table, self.path, "queue", "queue_moved")


def rename_table(path: Path, old: str, new: str) -> None:
    db = sqlite3.connect(path, timeout=10)
    try:
        db.execute(f"ALTER TABLE {old} RENAME TO {new}")
    finally:
        db.close()


async def test_a_database_error_on_the_first_replay_read_is_logged_and_retried_later(
        victoria: VictoriaMetrics, unique_tag: str, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    await fill_spool(tmp_path, unique_tag)
    w = writer(victoria.url, tmp_path, batch_size=PER_ROW, retry_backoff=(0.2, 0.2))
    failed_read = "reading the spool for replay failed"
    with caplog.at_level(logging.ERROR, logger="lifecycle.adapters.influx"):
        async with Supervisor([w, TableRenamer(w.spool_store.path)], shutdown_timeout=15.0) as sup:
            await wait_for(lambda: failed_read in caplog.text, 10, "the failed read logged")
            await anyio.to_thread.run_sync(rename_table, w.spool_store.path, "queue_moved",
                                           "queue")
            await wait_for(lambda: w.stats.inherited_written == ROWS * PER_ROW, 15, "replay")
    assert sup.report.failures == [] and sup.report.restarts == [], sup.report.format()
    assert "no such table: queue" in caplog.text
    assert await count(victoria, unique_tag) == ROWS * PER_ROW
