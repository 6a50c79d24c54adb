"""The app the soak benchmark watches: every kind of churn lifecycle supervises, at once.

Run as ``python -m benchmarks._soak_app`` with its settings as JSON in the environment
variable ``SOAK_CONFIG`` (the DSN holds a password: it stays out of the command line). The
process serves for ``seconds``, shuts itself down and prints one JSON line with its counts;
the parent samples its memory, file descriptors and threads from /proc meanwhile.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import tempfile
import threading
import time
from typing import Any

import anyio

from lifecycle import Health, RestartPolicy, Service, Supervisor, every

#: Keeps restarting and recovering for as long as the soak runs (the default would escalate).
FOREVER = RestartPolicy(backoff=(0.05, 0.2), jitter=0.0, max_restarts=10**9, window=1.0,
                        max_recoveries=10**9, stable_period=0.5)


class Flapper(Service):
    """``run()`` serves for ``period`` seconds, then fails: restarted every time."""

    restart = FOREVER

    def __init__(self, period: float) -> None:
        super().__init__()
        self.period = period

    async def run(self) -> None:
        await self.sleep(self.period)
        if not self.shutting_down:
            raise RuntimeError("flapping on purpose")


class Sickly(Service):
    """Healthy and unhealthy in turns of ``period`` seconds: health recoveries, forever."""

    restart = FOREVER
    check_interval = 0.1
    check_timeout = 1.0
    failure_threshold = 1
    grace_period = 0.1
    cooldown = 0.1

    def __init__(self, period: float) -> None:
        super().__init__()
        self.period = period

    async def check(self) -> bool | Health:
        if int(time.monotonic() / self.period) % 2:
            return Health(False, "sick on purpose")
        return True


def _short_thread(stop: threading.Event) -> None:
    stop.wait(0.001)


class Churn(Service):
    """Spawns short tasks and threads on an ``@every`` loop: task and thread churn."""

    def __init__(self, tasks: int, threads: int) -> None:
        super().__init__()
        self.tasks, self.threads = tasks, threads
        self.spawned_tasks = self.spawned_threads = 0

    @every(0.05)
    async def spawn_some(self) -> None:
        for _ in range(self.tasks):
            self.spawn(anyio.sleep, 0.001, name="short task")
        for _ in range(self.threads):
            self.spawn_thread(_short_thread, name="short thread")
        self.spawned_tasks += self.tasks
        self.spawned_threads += self.threads


class Producer(Service):
    """Writes ``points`` lines every 0.1 s into the InfluxWriter it depends on."""

    depends_on = ("metrics",)

    def __init__(self, points: int) -> None:
        super().__init__()
        self.points, self.sent = points, 0

    @every(0.1)
    async def produce(self) -> None:
        writer: Any = self.dependency("metrics")
        now = time.time_ns()
        writer.write_many([b"soak,app=soak value=%di %d" % (self.sent + i, now + i)
                           for i in range(self.points)])
        self.sent += self.points


class Querier(Service):
    """Queries the Postgres pool every 0.1 s; failures while the server restarts are counted."""

    depends_on = ("postgres",)

    def __init__(self) -> None:
        super().__init__()
        self.ok = self.failed = 0

    @every(0.1)
    async def query(self) -> None:
        db: Any = self.dependency("postgres")
        try:
            await db.fetchval("SELECT 1", timeout=2.0)
            self.ok += 1
        except Exception:
            self.failed += 1


MALLINFO_FIELDS = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                   "uordblks", "fordblks", "keepcost")


class MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2``: totals over every malloc arena."""

    _fields_ = [(name, ctypes.c_size_t) for name in MALLINFO_FIELDS]


def pymalloc_arenas() -> int:
    """pymalloc's current arena count, read from ``sys._debugmallocstats()`` (C stderr)."""
    with tempfile.TemporaryFile() as out:
        saved = os.dup(2)
        os.dup2(out.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode()
    for line in text.splitlines():
        if line.startswith("# arenas allocated current"):
            return int(line.rsplit("=", 1)[1].strip().replace(",", ""))
    return -1


def allocator_accounts(trim: bool) -> dict[str, int]:
    """glibc's bytes in use and freed-but-kept, pymalloc's arenas and blocks (diagnostics)."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    if trim:
        libc.malloc_trim(0)
    info = libc.mallinfo2()
    row = {name: int(getattr(info, name)) for name in MALLINFO_FIELDS}
    return {**row, "pymalloc_arenas": pymalloc_arenas(), "blocks": sys.getallocatedblocks()}


class MallocProbe(Service):
    """Diagnostics (``--probe``): the allocators' own accounts every ``period`` s, to a file.

    glibc's ``mallinfo2()`` separates memory held by live allocations (``uordblks``) from
    memory freed but kept by the allocator (``fordblks``); RSS growth with the first flat is
    fragmentation, not a leak. ``trim`` calls ``malloc_trim(0)`` first (an experiment).
    """

    def __init__(self, period: float, path: str, trim: bool) -> None:
        super().__init__()
        self.period, self.path, self.trim = period, path, trim
        self.last = 0.0

    @every(1.0)
    async def probe(self) -> None:
        if time.monotonic() - self.last < self.period:
            return
        self.last = time.monotonic()
        row = {"t": self.last, **allocator_accounts(self.trim)}
        with open(self.path, "a") as f:  # noqa: ASYNC230 - a hundred bytes now and then
            f.write(json.dumps(row) + "\n")


class Timer(Service):
    """Ends the soak after ``seconds``."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    async def run(self) -> None:
        if await self.sleep(self.seconds):
            self.request_shutdown("soak over")


async def soak(config: dict[str, Any], spool: str) -> dict[str, Any]:
    from lifecycle.adapters.influx import InfluxWriter
    from lifecycle.adapters.postgres import PostgresDatabase

    churn = Churn(config["tasks"], config["threads"])
    producer, querier = Producer(config["points"]), Querier()
    writer = InfluxWriter(config["victoria"], "soak-token", "soak", "soak", spool_path=spool,
                          name="metrics", timeout=1.0, connect_timeout=1.0,
                          breaker_reset=(0.5, 2.0), retry_backoff=(0.1, 1.0),
                          max_buffer_points=50_000, spool_fsync="normal")
    db = PostgresDatabase(config["dsn"], min_size=1, max_size=4, connect_timeout=2.0,
                          acquire_timeout=2.0, command_timeout=2.0, check_timeout=2.0)
    db.restart = FOREVER
    services = [Flapper(config["flap_period"]), Sickly(config["sick_period"]), churn, writer,
                producer, db, querier, Timer(config["seconds"])]
    off = set(config.get("without", ()))
    if "influx" in off:
        services = [s for s in services if s not in (writer, producer)]
    if "postgres" in off:
        services = [s for s in services if s not in (db, querier)]
    services = [s for s in services if s.name not in off]
    if config.get("probe"):
        services.append(MallocProbe(config["probe"], config["probe_file"],
                                    bool(config.get("trim"))))
    sup = Supervisor(services, leak_check=False, log_report=False, shutdown_timeout=20.0)
    report = await sup.serve(handle_signals=False)
    stats = writer.stats
    return {"exit_code": int(report.exit_code),
            "counts": {k: dict(v) for k, v in report.to_dict()["counts"].items()},
            "tasks": churn.spawned_tasks, "threads": churn.spawned_threads,
            "points_sent": producer.sent, "points_written": stats.written,
            "points_dropped": stats.dropped + stats.dead_lettered,
            "points_kept": stats.buffered + stats.in_spool,  # waiting in the spool at exit
            "queries_ok": querier.ok, "queries_failed": querier.failed,
            "threads_at_end": threading.active_count()}


def main() -> None:
    config = json.loads(os.environ["SOAK_CONFIG"])
    with tempfile.TemporaryDirectory(prefix="soak-spool-") as spool:
        outcome = anyio.run(soak, config, spool)
    print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    main()
