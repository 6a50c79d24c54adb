"""Startup: LEVELS x WIDTH services in dependency levels, each ``start()`` sleeping 20 ms.

Every service of level k depends on every service of level k-1, so the critical path is
LEVELS x 20 ms whatever the scheduler does; the figure is the elapsed time from "start"
until every service is running, and its ratio to that critical path. Each subject also
counts ordering violations: services whose start began before all their dependencies had
finished starting.
"""

from __future__ import annotations

import asyncio
import time

import anyio

from benchmarks import TIMES, Result, Size, ratio, summarize
from benchmarks._clock import Clock
from benchmarks._harness import measure

NAME = "startup"
TITLE = "Startup: services in dependency levels, each start() sleeping 20 ms"
GOAL = f"≤ 1.2{TIMES} the critical path"

#: Shown in docs/performance.md when lifecycle misses the goal (the profile follows it).
LIMITS = """
The raw anyio row is the floor: 20 ms sleeps end a little late on asyncio's timer, so ten
levels take about 1.05x the critical path with no framework at all. What lifecycle adds is
CPU per service at every level: a `_starting.start_one` task, a detached job per
`start()` (so a start that ignores its deadline can be abandoned) and a start record. Waits
on dependencies that already started no longer cost a loop turn each (400 per level here
before that fix). The profile below shows the split.
"""

SUBJECTS = {
    "lifecycle": "`Service` subclasses whose `start()` awaits `anyio.sleep(0.02)`, "
                 "`depends_on` = every service of the previous level; clock over "
                 "`await sup.__aenter__()` (every service running).",
    "raw anyio, level by level": "the floor: for each level, an anyio task group of WIDTH tasks "
                                 "each awaiting `anyio.sleep(0.02)`; no framework at all.",
    "mode (sequential)": "`Service.on_start()` awaits `asyncio.sleep(0.02)`; "
                         "an app service returns all of them, in dependency order, from "
                         "`on_init_dependencies()`; clock over `await Worker(app).start()`. mode "
                         "starts dependencies one after another, so order holds and the time is "
                         "the sum of all starts.",
    "aiomisc (unordered)": "`Service.start()` awaits `asyncio.sleep(0.02)`; clock over "
                           "entering `entrypoint(*services, log_config=False)`, which starts every "
                           "service at once: it has no dependency order, so the time is one start "
                           "and the violations column counts services started before their "
                           "dependencies.",
}


def _sizes(size: Size) -> tuple[int, int, float, int, int]:
    """(levels, width, start seconds, repeats, warmup)."""
    return (10, 20, 0.02, 5, 1) if size == "full" else (3, 3, 0.005, 1, 0)


def _graph(levels: int, width: int) -> list[tuple[str, tuple[str, ...]]]:
    """(name, depends_on) in dependency order."""
    nodes: list[tuple[str, tuple[str, ...]]] = []
    for level in range(levels):
        deps = tuple(f"s{level - 1}_{j}" for j in range(width)) if level else ()
        nodes.extend((f"s{level}_{i}", deps) for i in range(width))
    return nodes


class _Timeline:
    """When each service's start began and ended, to count ordering violations."""

    def __init__(self) -> None:
        self.began: dict[str, float] = {}
        self.ended: dict[str, float] = {}

    def violations(self, graph: list[tuple[str, tuple[str, ...]]]) -> int:
        return sum(1 for name, deps in graph
                   if any(self.ended.get(d, float("inf")) > self.began[name] for d in deps))


def sample_lifecycle(levels: int, width: int, seconds: float) -> dict[str, float]:
    from lifecycle import Service, Supervisor

    graph = _graph(levels, width)
    timeline = _Timeline()

    class Slow(Service):
        async def start(self) -> None:
            timeline.began[self.name] = time.perf_counter()
            await anyio.sleep(seconds)
            timeline.ended[self.name] = time.perf_counter()

    async def main() -> float:
        sup = Supervisor([Slow(name=name, depends_on=deps) for name, deps in graph])
        with Clock() as clock:
            await sup.__aenter__()
        await sup.__aexit__(None, None, None)
        return clock.elapsed

    elapsed = anyio.run(main)
    return {"value": elapsed, "violations": timeline.violations(graph)}


def sample_anyio(levels: int, width: int, seconds: float) -> float:
    async def main() -> float:
        with Clock() as clock:
            for _ in range(levels):
                async with anyio.create_task_group() as tg:
                    for _ in range(width):
                        tg.start_soon(anyio.sleep, seconds)
        return clock.elapsed

    return anyio.run(main)


def sample_mode(levels: int, width: int, seconds: float) -> dict[str, float]:
    import mode

    graph = _graph(levels, width)
    timeline = _Timeline()

    class Slow(mode.Service):
        def __init__(self, name: str) -> None:
            self.service_name = name
            super().__init__()

        async def on_start(self) -> None:
            timeline.began[self.service_name] = time.perf_counter()
            await asyncio.sleep(seconds)
            timeline.ended[self.service_name] = time.perf_counter()

    async def main() -> float:
        services: list[mode.Service] = [Slow(name) for name, _ in graph]

        class App(mode.Service):
            def on_init_dependencies(self) -> list[mode.Service]:
                return services

        worker = mode.Worker(App(), daemon=False, override_logging=False,
                             redirect_stdouts=False)
        with Clock() as clock:
            await worker.start()
        await worker.stop()
        return clock.elapsed

    elapsed = asyncio.run(main())
    return {"value": elapsed, "violations": timeline.violations(graph)}


def sample_aiomisc(levels: int, width: int, seconds: float) -> dict[str, float]:
    import aiomisc

    graph = _graph(levels, width)
    timeline = _Timeline()

    class Slow(aiomisc.Service):
        service_name: str

        async def start(self) -> None:
            timeline.began[self.service_name] = time.perf_counter()
            await asyncio.sleep(seconds)
            timeline.ended[self.service_name] = time.perf_counter()

    async def main() -> float:
        services = [Slow(service_name=name) for name, _ in graph]
        ep = aiomisc.entrypoint(*services, log_config=False)
        with Clock() as clock:
            await ep.__aenter__()
        await ep.__aexit__(None, None, None)
        return clock.elapsed

    elapsed = asyncio.run(main())
    return {"value": elapsed, "violations": timeline.violations(graph)}


#: subject -> (function, cut repeats): mode's sequential start takes seconds per run and
#: hardly varies, so it is repeated less.
_TARGETS = {
    "lifecycle": ("sample_lifecycle", False),
    "raw anyio, level by level": ("sample_anyio", False),
    "mode (sequential)": ("sample_mode", True),
    "aiomisc (unordered)": ("sample_aiomisc", False),
}


def run(size: Size) -> list[Result]:
    levels, width, seconds, repeats, warmup = _sizes(size)
    critical = levels * seconds
    results = [Result(NAME, "critical path (reference)", critical * 1000, "ms", 1.0,
                      extra={"services": levels * width})]
    for subject, (fn, slow) in _TARGETS.items():
        samples = measure(f"{__name__}:{fn}", levels=levels, width=width, seconds=seconds,
                          repeats=min(repeats, 2) if slow else repeats,
                          warmup=0 if slow else warmup)
        st = summarize(samples.values)
        violations = int(samples.extra.get("violations", 0))
        goal, met = "", None
        if subject == "lifecycle":
            goal, met = GOAL, st.median <= 1.2 * critical and violations == 0
        results.append(Result(NAME, subject, st.median * 1000, "ms", ratio(st.median, critical),
                              goal, met, st.best * 1000, st.n,
                              note=f"{violations} ordering violations" if violations else "",
                              extra={"violations": violations}))
    return results


def profile_target(size: Size) -> tuple[str, dict[str, object]]:
    levels, width, seconds, _, _ = _sizes(size)
    return f"{__name__}:sample_lifecycle", {"levels": levels, "width": width,
                                            "seconds": seconds}
