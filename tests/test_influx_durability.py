"""Disk-first durability: ``flush()`` as a barrier, and repeated SIGKILLs of a writer whose
server is stalled (SIGSTOP) for part of the run, against a real VictoriaMetrics."""

from __future__ import annotations

import functools
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from lifecycle import Supervisor
from lifecycle.adapters.influx import InfluxWriter
from tests.servers.http_faults import FaultProxy, too_many
from tests.servers.victoria import VictoriaMetrics

CHILD = Path(__file__).with_name("influx_spool_child.py")
BASE = time.time_ns() - 3600 * 10**9
pytestmark = pytest.mark.anyio


def lines(tag: str, n: int, start: int = 0) -> list[str]:
    return [f"durable,test={tag} value={i}i {BASE + i * 1_000_000}"
            for i in range(start, start + n)]


@pytest.mark.parametrize("durability", ["memory", "disk"])
async def test_flush_returns_once_every_earlier_point_is_written_or_committed(
        tmp_path: Path, durability: str) -> None:
    """Spool-only (no server): after ``flush()`` every accepted point is in the spool
    (committed), in both modes, on asyncio and trio; then a fresh spool sees them all."""
    w = InfluxWriter(None, spool_path=tmp_path, durability=durability,  # type: ignore[arg-type]
                     commit_interval=30.0, flush_interval=30.0, batch_size=50_000)
    async with Supervisor([w], shutdown_timeout=15.0):
        w.write_many(lines("flush", 12_345))
        assert w.stats.in_spool == 0  # nothing is due by itself for 30 s
        assert await w.flush(timeout=10.0)
        assert (w.stats.in_spool, w.stats.buffered) == (12_345, 0)
    assert w.name == InfluxWriter.from_env(environ={}).name == "influx_writer"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_disk_mode_delivers_from_the_spool_and_flush_times_out_while_stalled(
        fresh_victoria: VictoriaMetrics, unique_tag: str, tmp_path: Path,
        anyio_backend: str) -> None:
    vm = fresh_victoria
    w = InfluxWriter(vm.url, "t", "o", "b", spool_path=tmp_path, durability="disk",
                     commit_interval=0.05, timeout=1.0, connect_timeout=0.5, batch_size=1000)
    async with Supervisor([w], shutdown_timeout=15.0) as sup:
        w.write_many(lines(unique_tag, 5000))
        assert await w.flush(timeout=10.0)  # committed: durable before it is sent
        assert w.stats.buffered == 0 and w.stats.spooled == 5000
        with anyio.fail_after(20):
            while w.stats.written < 5000:
                await anyio.sleep(0.02)
        assert w.stats.in_spool == 0
    assert sup.report.ok, sup.report.format()
    found = await anyio.to_thread.run_sync(lambda: vm.count("durable_value", test=unique_tag))
    assert found == 5000


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_memory_mode_flush_sends_the_buffer_while_the_server_answers(
        victoria: VictoriaMetrics, unique_tag: str, tmp_path: Path, anyio_backend: str) -> None:
    w = InfluxWriter(victoria.url, "t", "o", "b", spool_path=tmp_path, durability="memory",
                     flush_interval=30.0, batch_size=1000)
    async with Supervisor([w], shutdown_timeout=15.0):
        w.write_many(lines(unique_tag, 4321))
        assert await w.flush(timeout=10.0)
        assert (w.stats.written, w.stats.spooled, w.stats.buffered) == (4321, 0, 0)


def kill_rounds(vm: VictoriaMetrics, spool: Path, tag: str, durability: str,
                rounds: int, seed: int) -> list[tuple[int, int, int]]:
    """Start the streaming child on ``spool``, SIGKILL it at a random moment, ``rounds``
    times, with the server stalled (SIGSTOP) in every other round. Returns, per round,
    (points accepted before the kill, points acknowledged by flush(), points of earlier
    rounds not replayed yet at the kill)."""
    rng = random.Random(seed)
    out = []
    for r in range(rounds):
        stall = r % 2 == 1
        if stall:
            vm.stall()
        child = subprocess.Popen([sys.executable, str(CHILD), "stream", vm.url, str(spool),
                                  f"{tag}_{r}", durability], stdout=subprocess.PIPE, text=True)
        accepted = acked = left = 0
        # after a stall, some kills come early: while the last round's points replay
        target = rng.randrange(200, 1000, 200) if r % 4 == 2 else rng.randrange(2000, 12000, 200)
        try:
            assert child.stdout is not None
            for text in child.stdout:
                what, n, *rest = text.split()
                if what == "accepted":
                    accepted, left = int(n), int(rest[0])
                else:
                    acked = int(n)
                if accepted >= target:
                    break
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(10)
            if stall:
                vm.resume()
        out.append((accepted, acked, left))
    return out


async def drain(vm: VictoriaMetrics, spool: Path) -> None:
    """A last writer with the server up replays whatever the killed ones left."""
    w = InfluxWriter(vm.url, "t", "o", "b", spool_path=spool, name="metrics", timeout=2.0)
    async with Supervisor([w], shutdown_timeout=15.0):
        with anyio.fail_after(60):
            while w.stats.spool_backlog:
                await anyio.sleep(0.05)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_repeated_sigkills_lose_no_acknowledged_point_in_disk_mode(
        fresh_victoria: VictoriaMetrics, unique_tag: str, tmp_path: Path,
        anyio_backend: str) -> None:
    """10 kills, 5 of them while the server is stalled and some while the points of the
    round before are replayed. Disk mode: every acknowledged point arrives, and what is
    lost of the rest is at most about one commit interval's worth of writes (200 points
    per 10 ms; 2,000 allowed for a loaded machine). Memory mode, the same run: a round
    killed during a stall loses more than that (the points held in memory; the child
    flushes every 6,000 points, which bounds it). Distinct timestamps are counted;
    duplicates (at-least-once) are printed."""
    vm = fresh_victoria
    results = {}
    for durability in ("disk", "memory"):
        spool = tmp_path / durability
        rounds = await anyio.to_thread.run_sync(kill_rounds, vm, spool, f"{unique_tag}{durability}",
                                                durability, 10, 7)
        await drain(vm, spool)
        counts = []
        duplicates = 0
        for r in range(len(rounds)):
            labels = {"test": f"{unique_tag}{durability}_{r}"}
            found = await anyio.to_thread.run_sync(
                functools.partial(vm.count, "sigkill_value", **labels))
            raw = await anyio.to_thread.run_sync(
                functools.partial(vm.raw_count, "sigkill_value", **labels))
            counts.append(found)
            duplicates += raw - found
        results[durability] = list(zip(rounds, counts, strict=True))
        print(f"{durability}: (accepted, acked, replay left at the kill) -> distinct found: "
              f"{results[durability]}; {duplicates} duplicate sample(s)")
    for (accepted, acked, _), found in results["disk"]:
        assert acked <= found <= accepted
        assert accepted - found <= 2000, results["disk"]
    assert any(left for (_, _, left), _ in results["disk"]), "no kill during a replay"
    # the same bound does not hold in memory mode: a stalled round loses what was in memory
    assert any(accepted - found > 2000 for (accepted, _, _), found in results["memory"]), \
        results["memory"]


def incident_killed_during_the_stall(vm: VictoriaMetrics, spool: Path, tag: str) -> str:
    child = subprocess.Popen([sys.executable, str(CHILD), "incident", vm.url, str(spool), tag],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "stall"
        vm.stall()
        child.stdin.write("go\n")
        child.stdin.flush()
        return child.stdout.readline().strip()
    finally:
        child.send_signal(signal.SIGKILL)  # during the stall
        child.wait(10)
        vm.resume()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_incident_s2_replayed_with_a_sigkill_during_the_stall_loses_nothing(
        fresh_victoria: VictoriaMetrics, unique_tag: str, tmp_path: Path,
        anyio_backend: str) -> None:
    """34,286 points in batches of 5,000, the server stalled after the second batch, the
    writer (disk mode) SIGKILLed during the stall: after a restart on the same spool,
    34,286 of 34,286 arrive (distinct timestamps; duplicates reported)."""
    vm = fresh_victoria
    said = await anyio.to_thread.run_sync(incident_killed_during_the_stall, vm, tmp_path,
                                          unique_tag)
    assert said == "committed 34286"
    await drain(vm, tmp_path)
    found = await anyio.to_thread.run_sync(
        functools.partial(vm.count, "sigkill_value", test=unique_tag))
    raw = await anyio.to_thread.run_sync(
        functools.partial(vm.raw_count, "sigkill_value", test=unique_tag))
    print(f"S2 replay: {found} distinct of 34286, {raw - found} duplicate sample(s)")
    assert found == 34_286


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_disk_mode_waits_out_a_retry_after_before_sending_again(
        victoria: VictoriaMetrics, unique_tag: str, tmp_path: Path, anyio_backend: str) -> None:
    async with FaultProxy(victoria.url) as proxy:
        w = InfluxWriter(proxy.url, "t", "o", "b", spool_path=tmp_path, durability="disk",
                         retry_backoff=(0.05, 0.2), breaker_threshold=5)
        async with Supervisor([w], shutdown_timeout=15.0):
            proxy.push(too_many(retry_after=1.0))
            w.write_many(lines(unique_tag, 100))
            with anyio.fail_after(10):
                while w.stats.written < 100:
                    await anyio.sleep(0.02)
        assert proxy.statuses() == [429, 204]
        assert proxy.seen[1].at - proxy.seen[0].at >= 0.95
