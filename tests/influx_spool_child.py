"""Child process for the SIGKILL tests: spool as fast as possible and say what is committed.

``python tests/influx_spool_child.py spool DIR`` appends batches straight to a
:class:`~lifecycle.adapters.spool.Spool`; ``... writer DIR TAG`` runs an :class:`InfluxWriter` in
spool-only mode (no URL). Either way it prints ``committed N`` (flushed) each time N points
are known to be committed to the spool, and never exits by itself: the parent kills it
with SIGKILL in the middle of a write.
"""

from __future__ import annotations

import sys
import time

sys.path.insert(0, __file__.rsplit("/tests/", 1)[0])

from lifecycle.adapters.spool import Batch, Spool

BATCH = 2000


def line(tag: str, i: int, base_ns: int) -> bytes:
    return f"sigkill,test={tag} value={i}i {base_ns + i * 1_000_000}".encode()


def run_spool(directory: str) -> None:
    spool = Spool(directory, synchronous="normal").open()
    base = time.time_ns()
    done = 0
    while True:
        result = spool.append_batches([Batch.of_lines([line("spool", done + k, base) for k in range(BATCH)])])
        assert result.ok, result
        done += BATCH
        print(f"committed {done}", flush=True)


def run_writer(directory: str, tag: str) -> None:
    import anyio

    from lifecycle import Supervisor
    from lifecycle.adapters.influx import InfluxWriter

    async def main() -> None:
        writer = InfluxWriter(None, None, None, None, name="metrics", spool_path=directory,
                              flush_interval=0.01, batch_size=BATCH)
        base = time.time_ns() - 3_600_000_000_000
        async with Supervisor([writer], shutdown_timeout=15.0):
            i = 0
            last = -1
            while True:
                writer.write_many([line(tag, i + k, base) for k in range(BATCH)])
                i += BATCH
                await anyio.sleep(0.005)
                spooled = writer.stats.in_spool
                if spooled != last:
                    print(f"committed {spooled}", flush=True)
                    last = spooled

    anyio.run(main)


def run_stream(url: str, directory: str, tag: str, durability: str) -> None:
    """Write 200 points every 10 ms to ``url``; print ``accepted N M`` after each write (M:
    points an earlier run left that are not replayed yet) and ``acked N`` each time a
    ``flush()`` returned True for the first N points."""
    import anyio

    from lifecycle import Supervisor
    from lifecycle.adapters.influx import InfluxWriter

    async def main() -> None:
        writer = InfluxWriter(url, "t", "o", "b", name="metrics", spool_path=directory,
                              durability=durability,  # type: ignore[arg-type]
                              timeout=5.0, connect_timeout=0.5, max_attempts=3,
                              retry_backoff=(0.05, 0.2), breaker_threshold=5,
                              breaker_reset=(0.2, 0.5), flush_interval=0.05, batch_size=1000)
        base = time.time_ns() - 3_600_000_000_000
        async with Supervisor([writer], shutdown_timeout=15.0):
            i = 0
            while True:
                writer.write_many([line(tag, i + k, base).decode() for k in range(200)])
                i += 200
                stats = writer.stats
                left = stats.inherited - stats.inherited_written - stats.inherited_lost
                print(f"accepted {i} {left}", flush=True)
                if i % 6000 == 0 and await writer.flush(timeout=5.0):
                    print(f"acked {i}", flush=True)
                await anyio.sleep(0.01)

    anyio.run(main)


def run_incident(url: str, directory: str, tag: str) -> None:
    """The S2 incident in disk mode: 34,286 points in batches of 5,000; after the second
    batch is written the child prints ``stall`` and waits for a line on stdin (the parent
    stalls the server), writes the rest, and prints ``committed N`` once the writer's
    counters say every point is in the spool or written (no flush() call)."""
    import anyio

    from lifecycle import Supervisor
    from lifecycle.adapters.influx import InfluxWriter

    async def main() -> None:
        writer = InfluxWriter(url, "t", "o", "b", name="metrics", spool_path=directory,
                              durability="disk", batch_size=5000)
        base = time.time_ns() - 3_600_000_000_000
        total, batch = 34_286, 5_000
        points = [line(tag, i, base).decode() for i in range(total)]
        async with Supervisor([writer], shutdown_timeout=15.0):
            writer.write_many(points[:batch])
            writer.write_many(points[batch:2 * batch])
            while writer.stats.written < 2 * batch:
                await anyio.sleep(0.01)
            print("stall", flush=True)
            await anyio.to_thread.run_sync(sys.stdin.readline)
            for start in range(2 * batch, total, batch):
                writer.write_many(points[start:start + batch])
            while True:
                stats = writer.stats
                if stats.buffered == 0 and stats.in_spool + stats.written == total:
                    print(f"committed {total}", flush=True)
                    await anyio.sleep(3600)
                await anyio.sleep(0.005)

    anyio.run(main)


if __name__ == "__main__":
    if sys.argv[1] == "incident":
        run_incident(*sys.argv[2:5])
        sys.exit(0)
    if sys.argv[1] == "spool":
        run_spool(sys.argv[2])
    elif sys.argv[1] == "stream":
        run_stream(*sys.argv[2:6])
    else:
        run_writer(sys.argv[2], sys.argv[3])
