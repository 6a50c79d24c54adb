"""Leak check: the cost of a clean ``LeakCheck`` and of its thread-creation hook.

A clean check is ``begin()`` (snapshot of threads and tasks, hooks installed) plus
``finish()`` (one scan, nothing new alive, so no settling). Measured with nothing else
running, and inside an asyncio app with 1,000 idle tasks and 10 idle threads (every scan
walks them). The hook is timed on what it slows down: ``Thread.start()`` (which returns
once the new thread runs), with and without a check active, interleaved in batches of 20.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time

from benchmarks import Result, Size, summarize
from benchmarks._clock import Clock
from benchmarks._harness import measure

NAME = "leakcheck"
TITLE = "Leak check: a clean LeakCheck, and the thread-creation hook"
CHECK_GOAL = "< 1 ms"
HOOK_GOAL = "< 10 % on Thread.start"

SUBJECTS = {
    "clean LeakCheck (idle process)": "`with LeakCheck(): pass` in a process with no event "
                                      "loop and no other threads; per check.",
    "clean LeakCheck (busy app)": "`async with LeakCheck(): pass` inside an "
                                                 "asyncio app with 1,000 idle tasks and 10 "
                                                 "idle threads; per check.",
    "Thread.start() without hook": "`threading.Thread(target=f).start()`, f returns at once; "
                                   "the join is outside the clock.",
    "Thread.start() with hook": "the same while a `LeakCheck` is active (the hook records "
                                "the starting service and a short stack).",
}


def _sizes(size: Size) -> tuple[int, int, int]:
    """(checks per sample, thread start pairs per sample, repeats)."""
    return (2000, 2000, 5) if size == "full" else (20, 20, 1)


def sample_clean_idle(checks: int) -> float:
    from lifecycle import LeakCheck

    times = []
    for _ in range(checks):
        with Clock() as clock, LeakCheck() as check:
            pass
        if not check.report.ok:
            raise RuntimeError(check.report.format())
        times.append(clock.elapsed)
    return statistics.median(times)


def sample_clean_busy(checks: int, tasks: int = 1000, threads: int = 10) -> float:
    from lifecycle import LeakCheck

    stop = threading.Event()
    workers = [threading.Thread(target=stop.wait, name=f"idle-{i}") for i in range(threads)]
    for worker in workers:
        worker.start()

    async def main() -> float:
        never = asyncio.Event()
        idle = [asyncio.create_task(never.wait()) for _ in range(tasks)]
        await asyncio.sleep(0)
        times = []
        for _ in range(checks):
            with Clock() as clock:
                async with LeakCheck() as check:
                    pass
            if not check.report.ok:
                raise RuntimeError(check.report.format())
            times.append(clock.elapsed)
        for task in idle:
            task.cancel()
        await asyncio.gather(*idle, return_exceptions=True)
        return statistics.median(times)

    try:
        return asyncio.run(main())
    finally:
        stop.set()
        for worker in workers:
            worker.join()


BATCH = 20  # thread starts per batch in sample_thread_hook


def _start_once() -> float:
    """Seconds of one ``Thread.start()`` (the join is outside the clock)."""
    thread = threading.Thread(target=int)
    with Clock() as clock:
        thread.start()
    thread.join()
    return clock.elapsed


def measure_hook_cost(n: int = 10_000) -> float:
    """Seconds the hook adds to one ``Thread.start`` (times ``record_origin``).

    Measured on an unstarted thread, from a call depth like a real ``start()``; the
    thread start itself (tens of microseconds) is not included.
    """
    from lifecycle._threadhook import record_origin

    thread = threading.Thread(target=lambda: None)

    def start_like() -> None:  # the frame _hooked_start would be
        record_origin(thread)

    began = time.perf_counter()
    for _ in range(n):
        start_like()
    return (time.perf_counter() - began) / n


def sample_thread_hook(starts: int) -> dict[str, float]:
    """``starts`` thread starts without and as many with the hook, interleaved in small
    batches so that drift on a busy machine hits both alike; the overhead of the medians.
    Also times the hook's own work (``record_origin``) directly."""
    from lifecycle import LeakCheck

    plain: list[float] = []
    hooked: list[float] = []
    for _ in range(20):  # warm up
        _start_once()
    for _ in range(max(starts // BATCH, 1)):
        plain.extend(_start_once() for _ in range(BATCH))
        check = LeakCheck(settle=0.0).begin()
        try:
            hooked.extend(_start_once() for _ in range(BATCH))
        finally:
            check.finish_sync()
    base, with_hook = statistics.median(plain), statistics.median(hooked)
    return {"value": with_hook / base, "plain": base, "hooked": with_hook,
            "hook_cost": measure_hook_cost(10_000)}


def run(size: Size) -> list[Result]:
    checks, starts, repeats = _sizes(size)
    results = []
    for subject, fn in (("clean LeakCheck (idle process)", "sample_clean_idle"),
                        ("clean LeakCheck (busy app)", "sample_clean_busy")):
        kwargs: dict[str, int] = {"checks": checks}
        if size != "full" and fn == "sample_clean_busy":
            kwargs.update(tasks=20, threads=2)
        st = summarize(measure(f"{__name__}:{fn}", repeats=repeats, **kwargs).values)
        ms = st.median * 1000
        results.append(Result(NAME, subject, ms, "ms", None, CHECK_GOAL, ms < 1.0,
                              st.best * 1000, st.n))
    samples = measure(f"{__name__}:sample_thread_hook", repeats=repeats, starts=starts)
    st = summarize(samples.values)  # hooked / plain, per run
    plain = summarize([float(e["plain"]) for e in samples.extras])
    hooked = summarize([float(e["hooked"]) for e in samples.extras])
    cost = statistics.median(float(e["hook_cost"]) for e in samples.extras)
    overhead = (st.median - 1) * 100
    results.append(Result(NAME, "Thread.start() without hook", plain.median * 1e6, "µs", 1.0,
                          best=plain.best * 1e6, samples=plain.n))
    results.append(Result(NAME, "Thread.start() with hook", hooked.median * 1e6, "µs", st.median,
                          HOOK_GOAL, st.median < 1.10, hooked.best * 1e6, hooked.n,
                          note=f"overhead {overhead:.1f} % (ratio: median over {st.n} runs of "
                          f"interleaved medians); the hook's own work: {cost * 1e6:.1f} µs "
                          "per start", extra={"overhead_percent": overhead,
                                              "hook_us": cost * 1e6}))
    return results


def profile_target(size: Size) -> tuple[str, dict[str, object]]:
    checks, _, _ = _sizes(size)
    return f"{__name__}:sample_clean_busy", {"checks": checks}
