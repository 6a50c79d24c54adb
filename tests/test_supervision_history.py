"""A process that runs for weeks in bounded memory: exact counts, bounded detail.

Simulated time (trio's MockClock) takes the waiting out of a flapping service; what is left
is the cost of recording each failure (formatting its traceback: about 0.3 ms). The suite
flaps 10,000 times through a real supervisor and records 100,000 failures straight into a
report; ``LIFECYCLE_FLAPS=100000 pytest -o timeout=600 -k flapping`` runs the long version.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import traceback
import tracemalloc
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from trio.testing import MockClock

from lifecycle import RestartPolicy, Service, Supervisor
from lifecycle.events import Event
from lifecycle.report import MAX_MESSAGE, MAX_TRACEBACK, FailureRecord, LifecycleReport

pytestmark = pytest.mark.anyio

FLAPS = int(os.environ.get("LIFECYCLE_FLAPS", "10000"))


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return "trio", {"clock": MockClock(autojump_threshold=0)}


@pytest.fixture
def quiet() -> Iterator[None]:
    """100,000 tracebacks in the log would be the test's own unbounded memory (pytest keeps
    every captured record): silence the lifecycle loggers for this test."""
    loggers = [logging.getLogger(name) for name in ("lifecycle", "lifecycle.events")]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    yield
    for lg, level in zip(loggers, saved, strict=True):
        lg.setLevel(level)


class Flapper(Service):
    """``run()`` fails ``flaps`` times, each time at once, then serves until shutdown."""

    restart = RestartPolicy(backoff=(0.001, 0.001), jitter=0.0, max_restarts=10**9, window=0.001)

    def __init__(self, flaps: int) -> None:
        super().__init__()
        self.flaps = flaps
        self.runs = 0

    async def run(self) -> None:
        self.runs += 1
        if self.runs > self.flaps:
            self.request_shutdown("done flapping")
            await self.wait_shutdown()
            return
        raise ValueError(f"flap #{self.runs}")


def serialized(report: LifecycleReport) -> int:
    return len(json.dumps(report.to_dict()))


async def test_a_flapping_service_keeps_exact_counts_and_bounded_detail(quiet: None) -> None:
    svc = Flapper(FLAPS)
    sup = Supervisor([svc], leak_check=False, log_report=False)
    sizes: dict[int, int] = {}

    def measure(event: Event) -> None:
        if event.kind == "ServiceFailed" and svc.runs in (1_000, FLAPS):
            sizes[svc.runs] = serialized(sup.report)

    sup.subscribe(measure)
    with anyio.fail_after(10 * FLAPS):
        report = await sup.serve(handle_signals=False)
    counts = report.counts["flapper"]
    assert (counts.failures, counts.restarts) == (FLAPS, FLAPS)  # exact
    assert report.failures.total() == FLAPS and report.restarts.total("flapper") == FLAPS
    kept = list(report.failures)
    assert len(kept) == 25 and report.failures.omitted() == {"flapper": FLAPS - 25}
    assert [f.error for f in kept[:5]] == [f"ValueError: flap #{n}" for n in range(1, 6)]
    assert [f.error for f in kept[-20:]] == [f"ValueError: flap #{n}" for n in range(FLAPS - 19, FLAPS + 1)]
    assert all("raise ValueError" in f.traceback for f in kept)  # the detail, with tracebacks
    assert sizes[FLAPS] - sizes[1_000] < 200  # only the counters' digits grew
    assert sizes[FLAPS] < 64 * 1024
    data = report.to_dict()
    assert data["counts"]["flapper"]["failures"] == FLAPS
    assert data["omitted"]["failures"] == {"flapper": FLAPS - 25}
    text = report.format()
    assert f"failures while running ({FLAPS} in all; {FLAPS - 25} left out" in text
    assert any(line.split() == ["flapper", str(FLAPS), str(FLAPS), "0", "0", "0"]
               for line in text.splitlines())


def test_100000_failures_recorded_take_bounded_memory_with_exact_counts() -> None:
    try:
        raise ConnectionResetError("peer went away")
    except ConnectionResetError as exc:
        text = "".join(traceback.format_exception(exc))
    report = LifecycleReport()
    tracemalloc.start()
    try:
        used: dict[int, int] = {}
        for n in range(1, 100_001):
            for service in ("a", "b"):
                report.failures.append(
                    FailureRecord(service, "run", f"ConnectionResetError #{n}", f"{text}#{n}", float(n)))
            if n in (1_000, 100_000):
                used[n] = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert used[100_000] - used[1_000] < 64 * 1024  # flat: 198,000 more failures, no growth
    assert (report.counts["a"].failures, report.counts["b"].failures) == (100_000, 100_000)
    assert report.failures.total() == 200_000 and len(report.failures) == 50
    assert [f.error for f in report.failures][:2] == ["ConnectionResetError #1"] * 2
    assert report.failures[-1].traceback.endswith("#100000") and report.failures[-1].service == "b"


def test_tracebacks_and_messages_are_size_capped_keeping_both_ends() -> None:
    def recurse(n: int) -> None:
        if n == 0:
            raise RuntimeError("x" * 100_000)
        recurse(n - 1)

    try:
        recurse(400)
    except RuntimeError as exc:
        import traceback

        text = "".join(traceback.format_exception(exc))
        error = f"RuntimeError: {exc}"
    assert len(text) > 4 * MAX_TRACEBACK
    record = FailureRecord("svc", "run", error, text, 0.0)
    assert len(record.traceback) < MAX_TRACEBACK + 100
    assert record.traceback.startswith("Traceback (most recent call last)")
    assert record.traceback.rstrip().endswith("x" * 100)  # the exception line's end is kept
    assert "characters left out" in record.traceback
    assert len(record.error) < MAX_MESSAGE + 100


async def test_finished_threads_and_ended_abandoned_jobs_are_not_kept_for_the_whole_run() -> None:
    class Worker(Service):
        check_interval = 1.0
        check_timeout = 0.1
        failure_threshold = 10**9  # never recovered: only the abandoned checks pile up
        grace_period = 0.0

        checks = 0
        threads_started = 0

        async def check(self) -> bool:
            self.checks += 1
            with anyio.CancelScope(shield=True):  # ignores cancellation: abandoned each time
                await anyio.sleep(3.0)
            return True

        async def run(self) -> None:
            while not self.shutting_down:
                done = threading.Event()
                self.spawn_thread(lambda stop, done=done: done.set(), name="job")
                self.threads_started += 1
                await anyio.to_thread.run_sync(done.wait)
                await self.sleep(1.0)

    svc = Worker()
    async with Supervisor([svc], leak_check=False, log_report=False) as sup:
        with anyio.fail_after(100_000):  # simulated; the counts, not the clock, end the wait
            while svc.threads_started < 600 or svc.checks < 600:
                await anyio.sleep(10)
        runtime = sup._runtimes["worker"]
        assert len(runtime.threads.items) <= 128
        assert len(sup.jobs.abandoned) <= 8
        counts = sup.report.counts["worker"]  # abandoned checks are unhealthy results, not failures
        assert (counts.failures, counts.incidents) == (0, 1)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_thread_errors_beyond_the_kept_ones_are_counted_and_tracebacks_capped() -> None:
    from lifecycle import LeakCheck
    from lifecycle._threadhook import MAX_ERROR_LINES, MAX_ERRORS

    def crash() -> None:
        raise RuntimeError("worker crashed")

    def deep(n: int) -> None:  # two alternating frames: Python does not fold them
        if n == 0:
            raise RecursionError("too deep")
        deeper(n - 1)

    def deeper(n: int) -> None:
        deep(n)

    with LeakCheck(settle=0.0) as check:
        for i in range(MAX_ERRORS + 9):
            t = threading.Thread(target=crash, name=f"crasher-{i}")
            t.start()
            t.join()
        t = threading.Thread(target=deep, args=(300,), name="deep")
        t.start()
        t.join()
    report = check.report
    assert len(report.thread_errors) == MAX_ERRORS
    assert report.thread_errors_omitted == 10  # 1,010 crashed, 1,000 kept: none lost uncounted
    assert not report.ok and report.to_dict()["thread_errors_omitted"] == 10
    assert "10 earlier unhandled exceptions in threads, counted but not kept" in report.format()
    [deepest] = [e for e in report.thread_errors if e.thread == "deep"]
    assert len(deepest.traceback) == MAX_ERROR_LINES + 1
    assert deepest.traceback[-1] == "RecursionError: too deep"
