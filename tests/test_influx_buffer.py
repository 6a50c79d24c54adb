"""The writer's memory: batches, the buffer's caps (what is held counts), one probe at a time."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from lifecycle.adapters.influx import InfluxWriter
from lifecycle.adapters.influx._buffer import SMALL, LineBuffer
from lifecycle.adapters.influx._delivery import Deliverer, Flight
from lifecycle.adapters.influx._http import Outcome
from lifecycle.adapters.influx._policy import BatchSizer, CircuitBreaker, RetryPolicy
from lifecycle.adapters.spool import EMPTY, Batch


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def lines(n: int, start: int = 0, width: int = 0) -> list[bytes]:
    return [b"m,t=%s v=%di %d" % (b"x" * width, i, i) for i in range(start, start + n)]


def test_batches_split_join_and_count_what_they_hold() -> None:
    batch = Batch.of_lines(lines(10))
    assert (batch.count, batch.size) == (10, sum(len(x) + 1 for x in lines(10)))
    head, rest = batch.split(3)
    assert (head.lines(), rest.lines()) == (lines(3), lines(7, 3))
    assert head.size + rest.size == batch.size
    assert batch.split(10) == (batch, EMPTY)
    assert batch.split(0) == (EMPTY, batch)
    assert Batch.join([head, EMPTY, rest]) == batch
    assert [p.lines() for p in batch.pieces(4)] == [lines(4), lines(4, 4), lines(2, 8)]
    assert (EMPTY.size, EMPTY.lines(), Batch.join([])) == (0, [], EMPTY)


def test_buffer_keeps_order_and_accounts_exactly() -> None:
    buf = LineBuffer(10_000, 10**9)
    small = [Batch.of_lines(lines(2, i)) for i in range(0, 20, 2)]  # coalesced into the tail
    big = Batch.of_lines(lines(500, 20, width=10))
    assert big.size > SMALL
    for batch in [*small[:5], big, *small[5:]]:
        buf.add(batch)
    expected = [*lines(10), *lines(500, 20, width=10), *lines(10, 10)]
    assert list(buf) == expected
    assert (len(buf), buf.bytes) == (520, sum(len(x) + 1 for x in expected))
    first = buf.take(7)
    assert first.lines() == expected[:7]
    buf.unshift(first)
    assert list(buf) == expected
    taken = buf.take_batches(300)
    assert [x for b in taken for x in b.lines()] == expected[:300]
    assert buf.take(10**6).lines() == expected[300:]
    assert (len(buf), buf.bytes, bool(buf)) == (0, 0, False)


def test_what_is_held_outside_the_buffer_counts_against_the_caps() -> None:
    buf = LineBuffer(max_points=100, max_bytes=10**6)
    buf.add(Batch.of_lines(lines(50)))
    out = buf.take(40)
    assert not buf.over_cap(80)
    with buf.holding(out):  # e.g. a request in flight
        assert buf.over_cap(80)
        assert buf.fitting(Batch.of_lines(lines(80))).count == 50
        assert buf.high_water() is False
        buf.add(Batch.of_lines(lines(30)))
        assert buf.high_water()
        assert buf.above_half() == 40 + 10 + 30 - 50
    assert (buf.held_points, buf.held_bytes) == (0, 0)


def test_the_writer_makes_room_for_a_write_before_taking_it(tmp_path: Path) -> None:
    writer = InfluxWriter(None, spool_path=tmp_path, max_buffer_points=1000, batch_size=100,
                          max_buffer_bytes=10_000)
    held = Batch.of_lines(lines(100, width=20))  # as if a batch of that size were in flight
    writer._buf.hold(held)
    for k in range(10):
        writer.write_many(lines(50, k * 50, width=20))
        assert writer._buf.bytes + writer._buf.held_bytes <= 10_000
    stats = writer.stats
    assert stats.spooled > 0
    assert stats.accepted == stats.buffered + stats.in_spool == 500
    writer._buf.release(held)
    writer.spool_store.close()


@pytest.mark.anyio
async def test_half_open_breaker_lets_one_probe_out_not_two() -> None:
    now = [0.0]
    breaker = CircuitBreaker(threshold=1, reset=1.0, reset_max=1.0, clock=lambda: now[0])
    gate = anyio.Event()
    posts: list[bytes] = []

    async def post(body: bytes) -> Outcome:
        posts.append(body)
        await gate.wait()
        return Outcome("ok", 204)

    deliverer = Deliverer(post, RetryPolicy(1, 0.01, 0.01, 0.0), breaker, BatchSizer(10),
                          lambda: None)
    breaker.failure()
    now[0] = 1.0
    assert breaker.state == "half_open"
    flights = [Flight(Batch.of_lines(lines(5))), Flight(Batch.of_lines(lines(5, 5)))]
    results: list[bool] = []

    async def go(flight: Flight) -> None:
        results.append(await deliverer.deliver(flight, attempts=1))

    async with anyio.create_task_group() as tg:
        tg.start_soon(go, flights[0])
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(go, flights[1])
        await anyio.wait_all_tasks_blocked()
        assert len(posts) == 1  # the second flight gave up instead of probing too
        gate.set()
    assert sorted(results) == [False, True]
    assert sorted(f.pending.count for f in flights) == [0, 5]
    assert breaker.state == "closed"


def test_the_lines_to_shed_count_the_byte_excess_at_the_average_line_size() -> None:
    buf = LineBuffer(max_points=100, max_bytes=2000)
    buf.add(Batch.of_lines([b"x" * 99] * 10))  # 10 lines of 100 bytes waiting
    buf.hold(Batch.of_lines([b"y" * 99] * 5))  # and 5 held: 15 lines, 1,500 bytes
    assert buf.lines_over(100, 10**6) == -85  # fits, 85 lines to spare
    assert buf.lines_over(12, 10**6) == 3
    assert buf.lines_over(100, 1000, size=250) == 8  # 750 bytes over: 7.5 lines, rounded up
    assert buf.lines_over(100, 1000, points=95, size=250) == 10  # the points are further over
    assert buf.above_half() == 5  # 500 bytes above half of 2,000
