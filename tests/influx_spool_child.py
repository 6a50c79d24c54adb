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

from lifecycle.adapters.spool import Spool

BATCH = 2000


def line(tag: str, i: int, base_ns: int) -> bytes:
    return f"sigkill,test={tag} value={i}i {base_ns + i * 1_000_000}".encode()


def run_spool(directory: str) -> None:
    spool = Spool(directory, synchronous="normal").open()
    base = time.time_ns()
    done = 0
    while True:
        result = spool.append([line("spool", done + k, base) for k in range(BATCH)])
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
    """Write 200 points every 10 ms to ``url``; print ``accepted N`` after each write and
    ``acked N`` each time a ``flush()`` returned True for the first N points."""
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
                print(f"accepted {i}", flush=True)
                if i % 6000 == 0 and await writer.flush(timeout=5.0):
                    print(f"acked {i}", flush=True)
                await anyio.sleep(0.01)

    anyio.run(main)


if __name__ == "__main__":
    if sys.argv[1] == "spool":
        run_spool(sys.argv[2])
    elif sys.argv[1] == "stream":
        run_stream(*sys.argv[2:6])
    else:
        run_writer(sys.argv[2], sys.argv[3])
