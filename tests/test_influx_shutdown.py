"""Nothing accepted disappears uncounted at shutdown, on a full disk, or in a damaged spool.

After every close: ``buffered == 0`` and ``accepted == written + in_spool + dead_lettered +
dropped`` exactly, whatever was cancelled where, and anything dropped makes the report not
ok. The faults are real: a tmpfs filled to the last byte (mounted by the test, as root), a
spool file whose pages are overwritten, a VictoriaMetrics stopped with SIGSTOP.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from lifecycle import Supervisor
from lifecycle.adapters.influx import InfluxWriter
from tests.servers.victoria import VictoriaMetrics

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


@pytest.mark.parametrize("durability", ["memory", "disk"])
async def test_points_written_right_before_the_close_all_reach_the_spool(
        tmp_path: Path, durability: str) -> None:
    """Spool-only: 20,000 points written and the close begun at once (the sender and the
    spiller, or the committer, are cancelled with batches taken out of the buffer)."""
    w = InfluxWriter(None, spool_path=tmp_path, name="metrics", batch_size=5000,
                     flush_interval=0.01, max_buffer_points=20_000,
                     durability=durability)  # type: ignore[arg-type]
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
                     name="metrics", batch_size=5000, flush_interval=0.01,
                     durability="memory", **fast)
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


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs of the test's own (a real filesystem that fills up); needs root."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0700", "tmpfs",
                           str(mount)], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=30)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem says ENOSPC; returns it (delete it to free room)."""
    path = directory / "filler"
    with open(path, "wb", buffering=0) as f:
        chunk = b"\0" * 4096
        with contextlib.suppress(OSError):
            while True:
                f.write(chunk)
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0")
    with pytest.raises(OSError) as full, open(directory / "probe", "wb", buffering=0) as f:
        f.write(b"\0" * 4096)
    assert full.value.errno == errno.ENOSPC
    return path


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_full_disk_still_drains_the_spool_once_the_server_is_back(
        fresh_victoria: VictoriaMetrics, small_disk: Path, unique_tag: str,
        anyio_backend: str) -> None:
    """The server is down; the spool fills the disk (points dropped, counted); the disk is
    then filled to the last byte, so that not even a delete commits; the server comes
    back: every spooled point is delivered once (not re-sent in a loop), the counters end
    exact, and the drop fails the report."""
    vm = fresh_victoria
    vm.stop()
    fast: dict[str, Any] = dict(timeout=1.0, connect_timeout=0.5, max_attempts=1,
                                breaker_threshold=1, breaker_reset=(0.2, 0.5),
                                retry_backoff=(0.05, 0.2), flush_interval=0.02)
    w = InfluxWriter(vm.url, "t", "o", "b", spool_path=small_disk / "spool", name="metrics",
                     batch_size=500, spool_fsync="normal", **fast)
    async with Supervisor([w], shutdown_timeout=15.0) as sup:
        k = 0
        with anyio.fail_after(30):
            while not w.stats.dropped:
                w.write_many(lines(unique_tag, 500, k * 500))
                k += 1
                await anyio.sleep(0.01)
        fill(small_disk)
        spooled = w.stats.in_spool
        assert spooled > 0 and w.stats.dropped_reasons.keys() == {"disk_full"}
        await anyio.to_thread.run_sync(vm.start)
        with anyio.fail_after(30):
            while w.stats.in_spool or w.stats.buffered:
                await anyio.sleep(0.05)
        assert w.stats.written == spooled
        assert w.report_details()["spool_unsettled"] > 0  # delivered, delete not yet on disk
    closed_exactly(w)
    assert not sup.report.ok
    assert "disk_full" in sup.report.format()
    found = await anyio.to_thread.run_sync(lambda: vm.count("shutdown_value", test=unique_tag))
    raw = await anyio.to_thread.run_sync(lambda: vm.raw_count("shutdown_value", test=unique_tag))
    assert found == spooled
    assert raw == spooled, "rows were sent again and again"


def damage_page_holding(path: Path, needle: bytes) -> int:
    """Overwrite with zeros the whole page of the SQLite file that holds ``needle`` (the
    file is checkpointed first, so the page is in the main file); returns the page number."""
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
    data = path.read_bytes()
    at = data.index(needle)
    page = at // page_size
    assert page > 0, "the needle is in the header page"
    with open(path, "r+b") as f:
        f.seek(page * page_size)
        f.write(b"\0" * page_size)
        f.flush()
        os.fsync(f.fileno())
    return page + 1


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_spool_damaged_late_is_quarantined_and_the_rest_delivered(
        fresh_victoria: VictoriaMetrics, unique_tag: str, tmp_path: Path,
        anyio_backend: str) -> None:
    """A first run spools 10,000 points in 20 rows (the server is down); a page of the
    file is then zeroed. The next run, with the server back, moves the damaged file aside,
    carries the readable rows over and delivers them, names the file and the points lost
    in the log and the report (not ok), and never retries the damaged row."""
    vm = fresh_victoria
    vm.stop()
    first = InfluxWriter(None, spool_path=tmp_path, name="metrics", batch_size=500)
    async with Supervisor([first], shutdown_timeout=15.0):
        for k in range(20):
            first.write_many(lines(unique_tag, 500, k * 500))
    assert first.stats.in_spool == 10_000
    needle = f"value=5000i {BASE + 5000 * 1_000_000}".encode()  # row 11 begins (leaf page)
    await anyio.to_thread.run_sync(damage_page_holding, first.spool_store.path, needle)

    await anyio.to_thread.run_sync(vm.start)
    fast: dict[str, Any] = dict(timeout=2.0, connect_timeout=1.0, flush_interval=0.02)
    w = InfluxWriter(vm.url, "t", "o", "b", spool_path=tmp_path, name="metrics",
                     batch_size=500, **fast)
    async with Supervisor([w], shutdown_timeout=15.0) as sup:
        with anyio.fail_after(30):
            while w.stats.spool_backlog:
                await anyio.sleep(0.05)
        stats = w.stats
        quarantined = w.report_details()["spool_quarantined"]
    closed_exactly(w)
    lost = stats.inherited_lost
    assert 0 < lost < 10_000 and lost % 500 == 0, stats  # whole rows, counted exactly
    assert (stats.inherited, stats.inherited_written) == (10_000, 10_000 - lost)
    assert stats.quarantined == 1 and quarantined[0]["points_lost"] == lost
    moved = Path(quarantined[0]["file"])
    assert moved.parent == tmp_path / "quarantine" and await anyio.Path(moved).exists()
    assert not sup.report.ok
    text = sup.report.format()
    assert str(moved) in text and f"{lost} point(s)" in text, text
    found = await anyio.to_thread.run_sync(lambda: vm.count("shutdown_value", test=unique_tag))
    assert found == 10_000 - lost


async def test_a_page_damaged_under_a_running_writer_is_counted_exactly_from_its_counters(
        tmp_path: Path) -> None:
    """Spool-only: 60,000 points in 120 rows; a page of an early row is zeroed on disk while
    the writer runs; the next read of the spool (what a replay does) quarantines the file.
    The writer moves exactly the lost points from ``in_spool`` to ``dropped``
    (``spool_corrupt``), the counters still balance, and the report is not ok."""
    w = InfluxWriter(None, spool_path=tmp_path, name="metrics", batch_size=500,
                     commit_interval=0.01)
    async with Supervisor([w], shutdown_timeout=15.0) as sup:
        for k in range(120):
            w.write_many(lines("late", 500, k * 500))
            assert await w.flush(timeout=10.0)
        needle = f"value=5000i {BASE + 5000 * 1_000_000}".encode()
        await anyio.to_thread.run_sync(damage_page_holding, w.spool_store.path, needle)
        kept = await anyio.to_thread.run_sync(
            lambda: sum(c.points for c in w.spool_store.peek(10**9)))
        stats = w.stats
        assert stats.quarantined == 1 and stats.dropped_reasons == {"spool_corrupt": stats.dropped}
        assert stats.in_spool == kept and kept + stats.dropped == 60_000
    closed_exactly(w)
    assert not sup.report.ok
    assert f"{w.stats.dropped} point(s) dropped" in sup.report.format()
