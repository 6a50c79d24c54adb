"""InfluxWriter against a real VictoriaMetrics: the incident replayed, outages, crashes.

Each test gives its points its own tag value and distinct millisecond timestamps, and
counts what arrived with the server fixture's ``count()`` (distinct timestamps, so a
replayed point that overwrote itself counts once).
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from lifecycle import LeakCheck, Supervisor
from lifecycle.adapters.influx import InfluxWriter
from tests.servers.http_faults import (
    PASS,
    STALL,
    FaultProxy,
    bad_request,
    respond,
    too_many,
    unavailable,
)
from tests.servers.victoria import VictoriaMetrics

CHILD = Path(__file__).with_name("influx_spool_child.py")
BASE = time.time_ns() - 3600 * 10**9  # an hour ago; points are 1 ms apart
FAST: dict[str, Any] = dict(
    durability="memory",  # the live path's retries, splits and breaker; disk mode: below
    timeout=1.0, connect_timeout=0.5, max_attempts=3, retry_backoff=(0.05, 0.5),
    retry_jitter=0.0, breaker_threshold=3, breaker_reset=(0.3, 1.0), flush_interval=0.05,
    flush_timeout=3.0, spool_timeout=2.0, close_timeout=2.0,
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def lines(tag: str, n: int, start: int = 0, measurement: str = "incident") -> list[str]:
    return [f"{measurement},test={tag} value={i}i {BASE + i * 1_000_000}"
            for i in range(start, start + n)]


def writer(url: str | None, spool: Path, **kw: Any) -> InfluxWriter:
    return InfluxWriter(url, "test-token", "org", "bucket", spool_path=spool,
                        name="metrics", **{**FAST, **kw})


async def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.02)


async def count(vm: VictoriaMetrics, tag: str, measurement: str = "incident") -> int:
    return await anyio.to_thread.run_sync(lambda: vm.count(f"{measurement}_value", test=tag))


@pytest.mark.anyio
@pytest.mark.parametrize("durability", ["memory", "disk"])
async def test_incident_replayed_server_stalls_after_second_batch(
        fresh_victoria: VictoriaMetrics, unique_tag: str, tmp_path: Path,
        durability: str) -> None:
    """34,286 points in batches of 5,000; the server stalls after batch 2: all arrive."""
    total, batch = 34_286, 5_000
    points = lines(unique_tag, total)
    w = writer(fresh_victoria.url, tmp_path, batch_size=batch, durability=durability)
    async with Supervisor([w], shutdown_timeout=15.0) as sup:
        w.write_many(points[:batch])
        w.write_many(points[batch:2 * batch])
        await wait_for(lambda: w.stats.written == 2 * batch, 10, "first two batches")
        with fresh_victoria.stalled():
            for start in range(2 * batch, total, batch):
                w.write_many(points[start:start + batch])
            await wait_for(lambda: w.stats.in_spool > 0 and (
                w.stats.retried > 0 or durability == "disk"), 10, "timeouts, retries, spooling")
            assert w.stats.buffered <= 100_000
        await wait_for(lambda: w.stats.written == total, 20, "replay after the stall")
        stats = w.stats
        assert (stats.dropped, stats.dead_lettered, stats.in_spool) == (0, 0, 0)
        assert stats.replayed > 0
        assert stats.balanced
    assert sup.report.ok, sup.report.format()
    assert await count(fresh_victoria, unique_tag) == total


@pytest.mark.anyio
async def test_server_killed_mid_stream_and_restarted(
        fresh_victoria: VictoriaMetrics, unique_tag: str, tmp_path: Path) -> None:
    """Writes go on while the server is dead (refused connections) and after it is back.

    VictoriaMetrics itself loses the last ~5 s of acknowledged writes on SIGKILL, so the
    test persists them (while no request is in flight) before killing it."""
    vm = fresh_victoria
    w = writer(vm.url, tmp_path, batch_size=1000)
    async with Supervisor([w], shutdown_timeout=15.0):
        w.write_many(lines(unique_tag, 3000))
        await wait_for(lambda: w.stats.written == 3000, 10, "first part")
        vm.persist()
        vm.kill()
        for k in range(10):  # the stream goes on against a dead server
            w.write_many(lines(unique_tag, 500, 3000 + k * 500))
            await anyio.sleep(0.05)
        await wait_for(lambda: w.stats.in_spool > 0, 10, "spooling while down")
        await anyio.to_thread.run_sync(vm.start)
        w.write_many(lines(unique_tag, 2000, 8000))
        await wait_for(lambda: w.stats.written == 10_000, 20, "everything after restart")
        assert w.stats.balanced
    assert await count(vm, unique_tag) == 10_000


@pytest.mark.anyio
async def test_server_down_all_run_spools_at_shutdown_and_next_start_replays(
        fresh_victoria: VictoriaMetrics, unique_tag: str, tmp_path: Path) -> None:
    vm = fresh_victoria
    vm.stop()
    first = writer(vm.url, tmp_path)
    began = time.monotonic()
    async with Supervisor([first], shutdown_timeout=15.0) as sup:
        first.write_many(lines(unique_tag, 20_000))
        await anyio.sleep(0.2)
        shutdown_began = time.monotonic()
    assert time.monotonic() - shutdown_began < 8.0  # the sum of the stage deadlines
    assert sup.report.ok, sup.report.format()
    stats = first.stats
    assert (stats.accepted, stats.in_spool, stats.written, stats.dropped) == (20_000, 20_000, 0, 0)
    assert time.monotonic() - began < 15

    await anyio.to_thread.run_sync(vm.start)
    second = writer(vm.url, tmp_path)
    async with Supervisor([second], shutdown_timeout=15.0):
        await wait_for(lambda: second.stats.inherited_written == 20_000, 15, "replay")
        assert second.stats.inherited == 20_000
        assert second.stats.spool_backlog == 0
    assert await count(vm, unique_tag) == 20_000


def kill_child_after(points: int, spool: Path, tag: str) -> int:
    """Run the child writer (spool-only mode) until it reports ``points`` committed to its
    spool, SIGKILL it, and return the last count it reported."""
    child = subprocess.Popen([sys.executable, str(CHILD), "writer", str(spool), tag],
                             stdout=subprocess.PIPE, text=True)
    committed = 0
    try:
        assert child.stdout is not None
        for text in child.stdout:
            committed = int(text.split()[1])
            if committed >= points:
                break
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    return committed


@pytest.mark.anyio
async def test_stalled_server_at_shutdown_flush_gives_up_in_time_and_spools(
        fresh_victoria: VictoriaMetrics, unique_tag: str, tmp_path: Path) -> None:
    w = writer(fresh_victoria.url, tmp_path, flush_timeout=1.5, timeout=5.0,
               flush_interval=10.0)
    async with Supervisor([w], shutdown_timeout=15.0) as sup:
        w.write_many(lines(unique_tag, 3000))
        fresh_victoria.stall()
        began = time.monotonic()
    elapsed = time.monotonic() - began
    fresh_victoria.resume()
    assert sup.report.ok, sup.report.format()  # the flush ended by itself, nothing overran
    assert elapsed < 1.5 + 2.0 + 2.0
    stats = w.stats
    assert (stats.in_spool, stats.written, stats.dropped) == (3000, 0, 0)


@pytest.mark.anyio
async def test_writer_sigkilled_while_spooling_loses_nothing_it_committed(
        victoria: VictoriaMetrics, unique_tag: str, tmp_path: Path) -> None:
    committed = await anyio.to_thread.run_sync(kill_child_after, 20_000, tmp_path, unique_tag)
    assert committed >= 20_000, "the child never committed enough"

    w = writer(victoria.url, tmp_path)
    async with Supervisor([w], shutdown_timeout=15.0):
        inherited = w.stats.inherited
        assert inherited >= committed
        await wait_for(lambda: w.stats.inherited_written == inherited, 15, "replay")
    assert await count(victoria, unique_tag, "sigkill") == inherited


@pytest.mark.anyio
async def test_retry_after_is_honoured_and_400_is_dead_lettered_not_retried(
        victoria: VictoriaMetrics, unique_tag: str, tmp_path: Path) -> None:
    async with FaultProxy(victoria.url) as proxy:
        w = writer(proxy.url, tmp_path, batch_size=100, max_attempts=5, retry_backoff=(0.05, 1.0))
        async with Supervisor([w], shutdown_timeout=15.0):
            # Retry-After within the backoff cap: the batch waits in memory, then is retried.
            proxy.push(too_many(retry_after=0.5))
            w.write_many(lines(unique_tag, 100))
            await wait_for(lambda: w.stats.written == 100, 10, "write after 429")
            assert proxy.statuses() == [429, 204, 204]
            assert [s.lines for s in proxy.seen] == [100, 50, 50]  # halved after the 429
            assert proxy.seen[1].at - proxy.seen[0].at >= 0.45
            assert (w.stats.retried, w.stats.spooled) == (1, 0)

            # Longer than we hold a batch: spooled, breaker open, replayed after Retry-After.
            proxy.seen.clear()
            proxy.push(too_many(retry_after=1.5))
            w.write_many(lines(unique_tag, 100, 100))
            await wait_for(lambda: w.stats.written == 200, 10, "replay after a long 429")
            assert proxy.statuses()[0] == 429
            assert set(proxy.statuses()[1:]) == {204}
            assert proxy.seen[1].at - proxy.seen[0].at >= 1.45
            assert (w.stats.spooled, w.stats.replayed) == (100, 100)

            proxy.seen.clear()
            proxy.push(bad_request("unable to parse 'incident,test=x value=oops'"))
            w.write_many(lines(unique_tag, 100, 200))
            await wait_for(lambda: w.stats.dead_lettered == 100, 10, "dead letter")
            w.write_many(lines(unique_tag, 100, 300))
            await wait_for(lambda: w.stats.written == 300, 10, "next batch")
            assert proxy.statuses() == [400, 204]  # the 400 was not retried
            dead = w.spool_store.dead_letters()
            assert [(d.status, len(d.lines)) for d in dead] == [(400, 100)]
            assert "unable to parse" in dead[0].reason
            assert w.stats.balanced

            # Once the cause is fixed, dead letters can be sent again.
            assert await w.requeue_dead_letters() == 100
            await wait_for(lambda: w.stats.written == 400, 10, "requeued dead letters")
            assert (w.stats.dead_lettered, w.stats.in_spool) == (0, 0)
            assert w.stats.balanced
    assert await count(victoria, unique_tag) == 400


@pytest.mark.anyio
async def test_5xx_shrinks_batches_413_splits_then_dead_letters_one_line(
        victoria: VictoriaMetrics, unique_tag: str, tmp_path: Path) -> None:
    async with FaultProxy(victoria.url) as proxy:
        w = writer(proxy.url, tmp_path, batch_size=1000, max_attempts=5)
        async with Supervisor([w], shutdown_timeout=15.0):
            proxy.push(unavailable(), unavailable())
            w.write_many(lines(unique_tag, 1000))
            await wait_for(lambda: w.stats.written == 1000, 10, "after 503s")
            assert [s.lines for s in proxy.seen] == [1000, 500, 250, 500, 250]
            proxy.seen.clear()
            proxy.push(*[respond(413)] * 3)
            w.write_many(lines(unique_tag, 4, 1000))
            await wait_for(lambda: w.stats.written + w.stats.dead_lettered == 1004, 10, "413")
            assert [(s.lines, s.status) for s in proxy.seen] == [
                (4, 413), (2, 413), (1, 413), (1, 204), (1, 204), (1, 204)]
            assert w.stats.dead_lettered == 1
            assert w.stats.balanced
    assert await count(victoria, unique_tag) == 1003


@pytest.mark.anyio
async def test_breaker_stops_hammering_then_replays(
        victoria: VictoriaMetrics, unique_tag: str, tmp_path: Path) -> None:
    async with FaultProxy(victoria.url, default=unavailable()) as proxy:
        w = writer(proxy.url, tmp_path, batch_size=500, breaker_reset=(0.5, 0.5))
        async with Supervisor([w], shutdown_timeout=15.0):
            for k in range(20):
                w.write_many(lines(unique_tag, 500, k * 500))
                await anyio.sleep(0.1)  # 2 s of traffic against a failing server
            requests = len(proxy.seen)
            assert requests <= 3 + 2 / 0.5 + 2, proxy.statuses()  # threshold, then 1 probe/0.5 s
            assert w.report_details()["breaker_opened"] >= 1
            proxy.default = PASS
            await wait_for(lambda: w.stats.written == 10_000, 15, "replay after recovery")
            assert w.stats.balanced
    assert await count(victoria, unique_tag) == 10_000


@pytest.mark.anyio
@pytest.mark.parametrize("in_flight", [1, 2])
async def test_the_next_batch_goes_out_while_the_server_holds_one(
        victoria: VictoriaMetrics, unique_tag: str, tmp_path: Path, in_flight: int) -> None:
    async with FaultProxy(victoria.url) as proxy:
        w = writer(proxy.url, tmp_path, batch_size=100, max_in_flight=in_flight, timeout=5.0)
        async with Supervisor([w], shutdown_timeout=15.0):
            proxy.push(STALL)
            w.write_many(lines(unique_tag, 200))
            if in_flight == 2:
                await wait_for(lambda: w.stats.written == 100, 5, "the batch after the held one")
                assert (proxy.inflight, proxy.statuses()) == (1, [204])
            else:
                await anyio.sleep(0.5)  # nothing to wait for: the second batch must not go
                assert (w.stats.written, proxy.inflight, proxy.statuses()) == (0, 1, [])
            proxy.release()
            await wait_for(lambda: w.stats.written == 200, 10, "both batches")
            assert w.stats.balanced
    assert await count(victoria, unique_tag) == 200


@pytest.mark.anyio
async def test_buffer_stays_under_its_cap_while_the_server_is_stalled(
        fresh_victoria: VictoriaMetrics, unique_tag: str, tmp_path: Path) -> None:
    cap_points, cap_bytes, batch = 5_000, 400_000, 1_000
    w = writer(fresh_victoria.url, tmp_path, batch_size=batch, max_buffer_points=cap_points,
               max_buffer_bytes=cap_bytes, breaker_threshold=100)
    tracemalloc.start()
    try:
        async with Supervisor([w], shutdown_timeout=15.0):
            with fresh_victoria.stalled():
                base_mem = tracemalloc.get_traced_memory()[0]
                tracemalloc.reset_peak()
                peak_buffer = 0
                for k in range(50):
                    w.write_many(lines(unique_tag, 1000, k * 1000))
                    # the caps cover the batches in flight and being spilled too
                    peak_buffer = max(peak_buffer, len(w._buf) + w._buf.held_points)
                    assert w._buf.bytes + w._buf.held_bytes <= cap_bytes
                    await anyio.sleep(0.01)
                peak_mem = tracemalloc.get_traced_memory()[1] - base_mem
                assert peak_buffer <= cap_points
                assert w.stats.in_spool > 0
            await wait_for(lambda: w.stats.written == 50_000, 20, "delivery after the stall")
    finally:
        tracemalloc.stop()
    # 50,000 points of ~60 bytes were written; what Python held at its peak is the cap plus
    # the test's own input and a write being encoded (~0.75 MB measured), not the total
    assert peak_mem < cap_bytes + 2**20, peak_mem
    assert await count(fresh_victoria, unique_tag) == 50_000


@pytest.mark.anyio
async def test_no_threads_left_and_the_token_never_shows(
        victoria: VictoriaMetrics, unique_tag: str, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    token = "s3cr3t-T0KEN-never-shown"
    caplog.set_level(logging.DEBUG)
    async with FaultProxy(victoria.url) as proxy:
        w = InfluxWriter(proxy.url, token, "org", "bucket", spool_path=tmp_path, name="metrics",
                         **FAST)
        with LeakCheck(settle=1.0) as check:
            async with Supervisor([w], shutdown_timeout=15.0) as sup:
                proxy.push(respond(401, f'{{"message":"token {token} is not authorized"}}'),
                           unavailable())
                w.write_many(lines(unique_tag, 10))
                await wait_for(lambda: w.stats.dead_lettered == 10, 10, "401 dead letter")
                w.write_many(lines(unique_tag, 10, 10))
                await wait_for(lambda: w.stats.written == 10, 10, "written after a 503")
                assert proxy.statuses() == [401, 503, 204]
        check.assert_clean()
    texts = [repr(w), sup.report.format(), json.dumps(sup.report.to_dict()), caplog.text,
             json.dumps(w.report_details()), str(w.stats),
             *(d.reason for d in w.spool_store.open().dead_letters())]
    w.spool_store.close()
    assert "not authorized" in " ".join(texts)
    for text in texts:
        assert token not in text
