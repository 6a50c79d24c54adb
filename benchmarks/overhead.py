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
children in a plain loop. lifecycle no longer makes a task per hook-less service either
(issue 12): one with no `start()` of its own starts inline once its dependencies run, and
one with nothing to wait for at close (no task running, no stop hook, no thread) closes
inline, dependents first. What remains per service is bookkeeping, counted in instructions
(valgrind, `python -m benchmarks._instructions`, 1,000 services, after those cuts): about
160 k in `Supervisor(...)` (validation of every declaration, the fitted stop stages: three
`Stage` objects per service), 140 k in the start and 145 k in the close. Of the last two,
the four events per service (ServiceStarting, ServiceStarted, StageFinished, ServiceStopped)
cost about 30 k each (16 k to build the event, the rest its subscribers), and the report's
verdicts (`ok`, `exit_code`, each a pass over every record, evaluated three times at the
end) about 15 k. aiomisc's whole start and stop is 262 k per service. The profile below
names where the time goes now.
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
