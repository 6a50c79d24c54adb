"""Shutdown latency: N services, each with an idle 60 s periodic loop; time from the
shutdown request until the framework reports everything stopped.

Every subject starts the same N loops, lets them park in their 60 s wait for 50 ms, then
requests shutdown; the clock runs until the framework's own "stopped" point (lifecycle:
``serve()`` returns its report; aiomisc: leaving ``entrypoint``; mode: ``Worker.stop()``
returns; raw anyio: the task group exits; plain loop: every task has returned).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import anyio

from benchmarks import TIMES, Result, Size, ratio, summarize
from benchmarks._clock import Clock
from benchmarks._harness import measure

NAME = "shutdown"
TITLE = "Shutdown latency: services with idle 60 s loops"
INTERVAL = 60.0  # every loop's period
SETTLE = 0.05  # let every loop park in its wait before the request
POLL = 1.0  # the plain loop's sleep slice between checks of its stop flag

SUBJECTS = {
    "lifecycle": "`Service` with an `@every(60)` method, N of them in one "
                 "`Supervisor` (defaults: leak check on, report logged); `serve()` runs, "
                 "`request_shutdown()`, clock stops when `serve()` returns the report.",
    "lifecycle (no leak check)": "the same with `Supervisor(..., leak_check=False)`: shows "
                                 "what the leak check adds.",
    "raw anyio": "the reference: N tasks `while True: await anyio.sleep(60)` in one anyio task "
                 "group; `tg.cancel_scope.cancel()`, clock stops when the group exits.",
    "plain sleep-polling loop": "N asyncio tasks `while not stopping: await asyncio.sleep(1)` "
                                "(the body runs every 60th slice); shutdown sets the flag and "
                                "gathers the tasks. Latency is about one slice: with a bare "
                                "`sleep(60)` it would be up to 60 s.",
    "aiomisc PeriodicService": "`PeriodicService(interval=60, delay=60)` with a no-op "
                               "`callback`, N of them in `async with entrypoint(*services, "
                               "log_config=False)`; clock runs over leaving the block "
                               "(`graceful_shutdown`: cancels the periodic tasks, awaits "
                               "every `stop()`).",
    "mode @Service.timer": "a `Service` with an `@Service.timer(60.0)` method, "
                           "N of them returned by an app service's `on_init_dependencies()`, "
                           "run by `Worker(app, daemon=False)`: `await worker.start()`, "
                           "clock over `await worker.stop()` (mode stops children one after "
                           "another).",
}

GOAL = f"≤ 1.5{TIMES} raw anyio, and faster than every peer"

#: Shown in docs/performance.md when lifecycle misses the goal (the profile follows it).
LIMITS = """
Raw anyio cancellation wakes each parked loop once. lifecycle's close wakes each loop once
too (its stop event), and since issue 12 that is the only event-loop step per service: a
service's tasks run detached in their own cancel scopes (no host task to wake and wind
down), and a service whose tasks have all ended, with no stop hook to run, is closed inline
by the close plan instead of in a task of its own. What remains per service is the loop's
own wake-up (two anyio cancel scopes: the loop's wait and the task's own), then the records
and events of the close: a `tasks` and a `stop` stage record, a `StageFinished` event per
record and a `ServiceStopped` event (about 30 k instructions each, counted with
`python -m benchmarks._instructions`), and the report's verdicts. aiomisc, the fastest
peer, cancels every periodic task and gathers the `stop()` coroutines once, with no
deadline per service, no record and no leak check. The profile below names where the time
goes now.
"""


def _sizes(size: Size) -> tuple[int, int, int]:
    """(services, repeats, warmup)."""
    return (1000, 5, 1) if size == "full" else (20, 1, 0)


def _kwargs(subject: str, size: Size) -> dict[str, Any]:
    fn, kwargs = _TARGETS[subject]
    if size != "full" and fn == "sample_polling":
        return {**kwargs, "poll": 0.05}  # the smoke run checks the harness, not the slice
    return kwargs


# ----- subjects (each runs in its own process) -------------------------------------------

def sample_lifecycle(n: int, leak_check: bool = True) -> float:
    from lifecycle import Service, Supervisor, every
    from lifecycle.events import AllStarted, Event, Stopped

    class Idle(Service):
        @every(INTERVAL)
        async def tick(self) -> None:
            pass

    async def main() -> float:
        sup = Supervisor([Idle(name=f"idle{i}") for i in range(n)], leak_check=leak_check)
        started, stopped = anyio.Event(), anyio.Event()

        def on_event(event: Event) -> None:
            if isinstance(event, AllStarted):
                started.set()
            elif isinstance(event, Stopped):  # emitted once the report is complete
                stopped.set()

        sup.subscribe(on_event)
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: sup.serve(handle_signals=False))
            await started.wait()
            await anyio.sleep(SETTLE)
            with Clock() as clock:
                sup.request_shutdown("benchmark")
                await stopped.wait()
        if not sup.report.ok:
            raise RuntimeError(f"lifecycle shutdown was not clean:\n{sup.report.format()}")
        return clock.elapsed

    return anyio.run(main)


def sample_anyio(n: int) -> float:
    async def loop() -> None:
        while True:
            await anyio.sleep(INTERVAL)

    async def main() -> float:
        clock = Clock()
        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(loop)
            await anyio.sleep(SETTLE)
            clock.__enter__()
            tg.cancel_scope.cancel()
        clock.__exit__(None, None, None)
        return clock.elapsed

    return anyio.run(main)


def sample_polling(n: int, poll: float = POLL) -> float:
    stopping = False

    async def loop(phase: float) -> None:
        await asyncio.sleep(phase)  # loops started at different times: random phases
        slices = 0
        while not stopping:
            await asyncio.sleep(poll)
            slices += 1
            if slices % int(INTERVAL / poll) == 0:
                pass  # the body

    async def main() -> float:
        nonlocal stopping
        rng = random.Random(1)
        tasks = [asyncio.create_task(loop(rng.uniform(0, poll))) for _ in range(n)]
        await asyncio.sleep(SETTLE + poll)  # past every random phase, then parked
        with Clock() as clock:
            stopping = True
            await asyncio.gather(*tasks)
        return clock.elapsed

    return asyncio.run(main())


def sample_aiomisc(n: int) -> float:
    import aiomisc
    from aiomisc.service.periodic import PeriodicService

    class Idle(PeriodicService):
        async def callback(self) -> None:
            pass

    async def main() -> float:
        # delay: the first run one interval after start, like @every
        services = [Idle(interval=INTERVAL, delay=INTERVAL) for _ in range(n)]
        ep = aiomisc.entrypoint(*services, log_config=False)
        await ep.__aenter__()
        await asyncio.sleep(SETTLE)
        with Clock() as clock:
            await ep.__aexit__(None, None, None)
        return clock.elapsed

    return asyncio.run(main())


def sample_mode(n: int) -> float:
    import mode

    class Idle(mode.Service):
        @mode.Service.timer(INTERVAL)
        async def tick(self) -> None:
            pass

    async def main() -> float:
        children: list[mode.Service] = [Idle() for _ in range(n)]

        class App(mode.Service):
            def on_init_dependencies(self) -> list[mode.Service]:
                return children

        worker = mode.Worker(App(), daemon=False, override_logging=False,
                             redirect_stdouts=False)
        await worker.start()
        await asyncio.sleep(SETTLE)
        with Clock() as clock:
            await worker.stop()
        return clock.elapsed

    return asyncio.run(main())


# ----- the benchmark ------------------------------------------------------------------------

_TARGETS: dict[str, tuple[str, dict[str, Any]]] = {
    "lifecycle": ("sample_lifecycle", {}),
    "lifecycle (no leak check)": ("sample_lifecycle", {"leak_check": False}),
    "raw anyio": ("sample_anyio", {}),
    "plain sleep-polling loop": ("sample_polling", {}),
    "aiomisc PeriodicService": ("sample_aiomisc", {}),
    "mode @Service.timer": ("sample_mode", {}),
}
PEERS = ("plain sleep-polling loop", "aiomisc PeriodicService", "mode @Service.timer",
         "raw anyio")


def run(size: Size) -> list[Result]:
    n, repeats, warmup = _sizes(size)
    stats = {}
    for subject, (fn, _) in _TARGETS.items():
        samples = measure(f"{__name__}:{fn}", n=n, repeats=repeats, warmup=warmup,
                          **_kwargs(subject, size))
        stats[subject] = summarize(samples.values)
    ref = stats["raw anyio"].median
    best_peer = min(stats[p].median for p in PEERS)
    results = []
    for subject, st in stats.items():
        goal, met = "", None
        if subject == "lifecycle":
            goal = GOAL
            met = st.median <= 1.5 * ref and st.median < best_peer
        results.append(Result(NAME, subject, st.median * 1000, "ms", ratio(st.median, ref), goal,
                              met, st.best * 1000, st.n, extra={"services": n}))
    return results


def profile_target(size: Size) -> tuple[str, dict[str, object]]:
    """What to profile when lifecycle misses its goal here."""
    return f"{__name__}:sample_lifecycle", {"n": _sizes(size)[0]}
