"""A second signal forces the shutdown: every wait of the graceful close is cut short.

Real signals: the supervisor serves in this process (pytest's main thread) and the test
sends itself SIGINT, then, once the close is under way, SIGINT again until the shutdown is
forced (signals right after the first are taken for repeats of it and ignored). Each case
would take 20 s or more if the promise were broken; each must end within a few seconds.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

import anyio
import pytest

from lifecycle import Service, Stage, Supervisor
from lifecycle.events import Event
from lifecycle.report import LifecycleReport

pytestmark = pytest.mark.anyio

SLOW = 20.0  # what a graceful close would wait for; the forced one must not


async def serve_and_force(sup: Supervisor, closing: Callable[[], bool] = lambda: True
                          ) -> tuple[LifecycleReport, float]:
    """Serve ``sup``; SIGINT once started, SIGINT again when ``closing()`` holds, until the
    shutdown is forced. Returns the report and the seconds from the forcing to the end of
    ``serve()``."""
    started, requested, forced = anyio.Event(), anyio.Event(), anyio.Event()
    forced_at: list[float] = []

    def on_event(event: Event) -> None:
        if event.kind == "AllStarted":
            started.set()
        elif event.kind == "ShutdownRequested":
            requested.set()
        elif event.kind == "ShutdownForced":
            forced_at.append(time.monotonic())
            forced.set()

    sup.subscribe(on_event)

    async def signal_twice() -> None:
        await started.wait()
        os.kill(os.getpid(), signal.SIGINT)
        await requested.wait()  # the first was handled: the next is not merged into it
        while not closing():  # no event marks these points of the close: poll, bounded
            await anyio.sleep(0.01)
        while not forced.is_set():  # repeats within the first's window are ignored
            os.kill(os.getpid(), signal.SIGINT)
            with anyio.move_on_after(0.2):
                await forced.wait()

    with anyio.fail_after(SLOW * 2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(signal_twice)
            report = await sup.serve(handle_signals=True)
    return report, time.monotonic() - forced_at[0]


class Stubborn(Service):
    """A ``run()`` that ignores the shutdown announcement (it never checks it)."""

    stop_stages = (Stage("drain", SLOW),)

    async def run(self) -> None:
        await anyio.sleep(3600)

    async def drain(self) -> None:
        pass


async def test_a_forced_shutdown_cancels_tasks_that_ignore_the_announcement() -> None:
    report, elapsed = await serve_and_force(Supervisor([Stubborn()], leak_check=False))
    assert elapsed < 5.0, f"the forced close still waited {elapsed:.1f}s for run()"
    assert report.forced_by == signal.SIGINT
    tasks = report.shutdown["stubborn"]["tasks"]
    assert tasks.outcome == "cancelled" and "forced" in (tasks.error or "")


async def test_a_forced_shutdown_cuts_the_drain_delay_short() -> None:
    sup = Supervisor([Service(name="api")], drain_delay=SLOW, shutdown_timeout=SLOW + 5,
                     leak_check=False)
    report, elapsed = await serve_and_force(sup, lambda: bool(sup.health()["draining"]))
    assert elapsed < 5.0, f"the drain went on for {elapsed:.1f}s after the second signal"
    assert report.exit_code == 128 + signal.SIGINT


async def test_a_forced_shutdown_stops_waiting_for_threads_that_ignore_their_stop_flag() -> None:
    release = threading.Event()

    class Threaded(Service):
        stop_timeout = SLOW

        async def start(self) -> None:
            self.spawn_thread(lambda stop: release.wait(60), name="deaf")

    try:
        report, elapsed = await serve_and_force(Supervisor([Threaded()], leak_check=False))
    finally:
        release.set()
    assert elapsed < 5.0, f"the forced close still joined threads for {elapsed:.1f}s"
    threads = report.shutdown["threaded"]["threads"]
    assert threads.outcome == "abandoned" and "threaded.deaf" in (threads.error or "")
