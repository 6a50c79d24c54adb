"""Overhead: start and stop N no-op services; the cost per service.

The service objects are built before the clock starts; the clock covers building the
framework's container (lifecycle validates the graph in ``Supervisor(...)``), starting
everything, and stopping everything.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio

from benchmarks import Result, Size, ratio, summarize
from benchmarks._clock import Clock
from benchmarks._harness import measure

NAME = "overhead"
TITLE = "Overhead: start + stop of no-op services, per service"
GOAL = "below aiomisc's and mode's"

#: Shown in docs/performance.md when lifecycle misses the goal (the profile follows it).
LIMITS = """
aiomisc's start is one task per service and its stop one gather; mode starts and stops
children in a plain loop. lifecycle, for a service with no hooks at all, still builds a
runtime with its own context, about ten anyio `Event`s (each looks up the async backend
through sniffio), a task host (a detached task with a task group), a detached `Job` task
for each of the inherited no-op `start()` and `stop()`, a `_start_one` and a
`_close_one` task, a `close_monitor` task even without health checks, and a record plus an
event per stage; with the leak check on, each task also records its creation stack
(`_threadhook.capture`). In A/B runs while writing this benchmark, creating the task host on
first spawn, skipping the `Job` for inherited no-op hooks and the `close_monitor` task
without a monitor, and formatting the report only when it is logged took this figure from
about 650 to about 130 µs per service; what remains is mostly anyio task creation
(`TaskGroup.start_soon`, ~50 µs each with the leak-check stack capture) and anyio `Event`
creation. The profile below names where the time goes now.
"""

SUBJECTS = {
    "lifecycle": "N `Service()` without hooks; clock over `Supervisor(services)` and "
                 "`async with sup: pass` (defaults: leak check on, report logged).",
    "lifecycle (no leak check)": "the same with `leak_check=False`.",
    "aiomisc": "N `Service` subclasses with no-op `start()`; clock over "
               "`async with entrypoint(*services, log_config=False): pass`.",
    "mode": "N `Service()` without hooks returned by an app service's "
            "`on_init_dependencies()`; clock over `Worker(app, daemon=False)`, "
            "`await worker.start()`, `await worker.stop()`.",
}


def _sizes(size: Size) -> tuple[int, int, int]:
    """(services, repeats, warmup)."""
    return (1000, 5, 1) if size == "full" else (20, 1, 0)


def sample_lifecycle(n: int, leak_check: bool = True) -> float:
    from lifecycle import Service, Supervisor

    class Noop(Service):
        pass

    async def main() -> float:
        services = [Noop(name=f"noop{i}") for i in range(n)]
        with Clock() as clock:
            sup = Supervisor(services, leak_check=leak_check)
            async with sup:
                pass
        if not sup.report.ok:
            raise RuntimeError(sup.report.format())
        return clock.elapsed

    return anyio.run(main)


def sample_aiomisc(n: int) -> float:
    import aiomisc

    class Noop(aiomisc.Service):
        async def start(self) -> None:
            pass

    async def main() -> float:
        services = [Noop() for _ in range(n)]
        with Clock() as clock:
            async with aiomisc.entrypoint(*services, log_config=False):
                pass
        return clock.elapsed

    return asyncio.run(main())


def sample_mode(n: int) -> float:
    import mode

    class Noop(mode.Service):
        pass

    async def main() -> float:
        services: list[mode.Service] = [Noop() for _ in range(n)]

        class App(mode.Service):
            def on_init_dependencies(self) -> list[mode.Service]:
                return services

        app = App()
        with Clock() as clock:
            worker = mode.Worker(app, daemon=False, override_logging=False,
                                 redirect_stdouts=False)
            await worker.start()
            await worker.stop()
        return clock.elapsed

    return asyncio.run(main())


_TARGETS: dict[str, tuple[str, dict[str, Any]]] = {
    "lifecycle": ("sample_lifecycle", {}),
    "lifecycle (no leak check)": ("sample_lifecycle", {"leak_check": False}),
    "aiomisc": ("sample_aiomisc", {}),
    "mode": ("sample_mode", {}),
}


def run(size: Size) -> list[Result]:
    n, repeats, warmup = _sizes(size)
    per = {}
    for subject, (fn, kwargs) in _TARGETS.items():
        samples = measure(f"{__name__}:{fn}", n=n, repeats=repeats, warmup=warmup, **kwargs)
        per[subject] = summarize([v / n for v in samples.values])
    ref = min(per["aiomisc"].median, per["mode"].median)
    results = []
    for subject, st in per.items():
        goal, met = "", None
        if subject == "lifecycle":
            goal, met = GOAL, st.median < ref
        results.append(Result(NAME, subject, st.median * 1e6, "µs/service", ratio(st.median, ref),
                              goal, met, st.best * 1e6, st.n, extra={"services": n}))
    return results


def profile_target(size: Size) -> tuple[str, dict[str, object]]:
    return f"{__name__}:sample_lifecycle", {"n": _sizes(size)[0]}
