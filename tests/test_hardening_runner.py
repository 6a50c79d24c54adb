"""``Supervisor.run()``'s event-loop runners return past work that will not end (item 5)."""

from __future__ import annotations

import threading
import time

import trio

from lifecycle._runner import TEARDOWN_GRACE, run_trio


def test_the_trio_runner_returns_past_a_system_task_stuck_in_a_thread_and_trio_still_works() -> None:
    release = threading.Event()

    async def main() -> str:
        async def stuck() -> None:  # trio.run would wait for this until the thread ends
            await trio.to_thread.run_sync(release.wait, 30)

        trio.lowlevel.spawn_system_task(stuck)
        await trio.sleep(0.05)
        return "report"

    began = time.monotonic()
    try:
        assert run_trio(main) == "report"
        elapsed = time.monotonic() - began
        assert elapsed < 0.05 + TEARDOWN_GRACE + 2.0, f"returned after {elapsed:.2f}s"
        assert trio.run(trio.lowlevel.checkpoint) is None  # the abandoned run released trio's state
    finally:
        release.set()


def test_the_trio_runner_returns_at_once_when_nothing_is_stuck() -> None:
    async def main() -> int:
        await trio.lowlevel.checkpoint()
        return 7

    began = time.monotonic()
    assert run_trio(main) == 7
    assert time.monotonic() - began < TEARDOWN_GRACE + 1.0

