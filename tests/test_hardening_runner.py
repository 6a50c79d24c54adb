"""``Supervisor.run()``'s event-loop runners return past work that will not end (item 5)."""

from __future__ import annotations

import gc
import sys
import threading
import time

import trio

from lifecycle._runner import TEARDOWN_GRACE, run_event_loop


def test_the_trio_runner_returns_past_a_system_task_stuck_in_a_thread_and_trio_still_works() -> None:
    release = threading.Event()
    unstuck = threading.Event()

    def wait_for_release() -> None:
        release.wait(30)
        unstuck.set()

    async def main() -> str:
        async def stuck() -> None:  # trio.run would wait for this until the thread ends
            await trio.to_thread.run_sync(wait_for_release)

        trio.lowlevel.spawn_system_task(stuck)
        await trio.sleep(0.05)
        return "report"

    began = time.monotonic()
    try:
        assert run_event_loop("trio", main) == "report"
        elapsed = time.monotonic() - began
        assert elapsed < 0.05 + TEARDOWN_GRACE + 2.0, f"returned after {elapsed:.2f}s"
        assert trio.run(trio.lowlevel.checkpoint) is None  # the abandoned run released trio's state
    finally:
        release.set()
        _collect_the_abandoned_run(unstuck)


def _collect_the_abandoned_run(unstuck: threading.Event) -> None:
    """Once its thread is done, the abandoned run is garbage; collect it here, where it was
    made: its nurseries and coroutines complain as they are collected (the process would be
    exiting in the case the runner exists for), which would otherwise land in a later test."""
    assert unstuck.wait(5)
    time.sleep(0.05)  # the worker thread hands its result back to the (dead) run, then idles
    hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: None
    try:
        gc.collect()
    finally:
        sys.unraisablehook = hook


def test_the_trio_runner_returns_at_once_when_nothing_is_stuck() -> None:
    async def main() -> int:
        await trio.lowlevel.checkpoint()
        return 7

    began = time.monotonic()
    assert run_event_loop("trio", main) == 7
    assert time.monotonic() - began < TEARDOWN_GRACE + 1.0



def test_a_trio_teardown_that_keeps_moving_is_let_finish_on_a_slow_machine() -> None:
    """A loaded machine makes trio's own teardown slow, not stuck: abandoning it after one
    grace would leave a half-torn-down run as garbage that complains when collected later."""
    finished = threading.Event()

    async def main() -> str:
        async def slow_to_stop() -> None:
            try:
                await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True):
                    for _ in range(12):  # 1.5 graces of work, a loop step at a time
                        time.sleep(TEARDOWN_GRACE / 8)  # noqa: ASYNC251 - a loaded CPU
                        await trio.lowlevel.checkpoint()
                finished.set()

        trio.lowlevel.spawn_system_task(slow_to_stop)
        await trio.lowlevel.checkpoint()
        return "report"

    began = time.monotonic()
    assert run_event_loop("trio", main) == "report"
    assert finished.is_set(), "the teardown was abandoned while it was still moving"
    assert time.monotonic() - began < 4 * TEARDOWN_GRACE + 2.0
