"""The core's promises, checked on generated apps (Hypothesis).

Each example is a supervisor of up to ~30 services over a random dependency DAG; every hook
is drawn from {returns, raises, hangs but cancellable, ignores cancellation, blocks in a
thread, SystemExit}; stop stages, deadlines and the budget are random (small); a shutdown
is requested at a random moment (before, during or after startup), sometimes followed by a
forced second request. The hooks write down when they began; the events say when each
service was running and when each stage ended. Invariants, on every example:

- ``serve()`` returns, within ``shutdown_timeout`` + the documented constant of the moment
  the close began, and nothing escapes it;
- no stop stage began before every service depending on it had finished stopping;
- no ``start()`` began before all its dependencies were running;
- every hook that misbehaved is named in the report with a non-ok outcome;
- ``report.to_dict()`` is JSON-serialisable and ``exit_code`` agrees with the documented table;
- after the close, every thread still blocked in a hook is named in the report.

The CI profile runs a few examples per backend with a fixed seed; ``./dev test
--hypothesis-profile long tests/test_properties_core.py`` runs hundreds.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lifecycle import RestartPolicy, Service, Stage, Supervisor
from lifecycle.events import Event, ServiceStarted, ShutdownRequested, StageFinished

#: The documented bound: the close returns within ``shutdown_timeout`` plus this.
CLOSE_CONSTANT = 1.0
#: What a loaded 2-core machine adds on top (the goal itself is in benchmarks/).
SLACK = 1.5

BEHAVIOURS = ("returns", "raises", "hangs", "ignores_cancel", "blocks_thread", "system_exit")
MISBEHAVING = frozenset(BEHAVIOURS) - {"returns"}
RUN_BEHAVIOURS = ("none", "serves", "raises", "hangs", "ignores_cancel", "system_exit")


@dataclass
class Hook:
    behaviour: str
    hold: float  # seconds an uncooperative hook keeps going (bounded, so tests end)


@dataclass
class Spec:
    name: str
    depends_on: tuple[str, ...]
    optional: bool
    start_timeout: float
    start: Hook
    run: Hook
    stages: list[tuple[float, Hook]]


@dataclass
class Scenario:
    services: list[Spec]
    budget: float
    shutdown_at: float  # seconds after serve() began
    force_after: float | None  # a second (forcing) request this long after the first


@dataclass
class Journal:
    """What the hooks saw: ``(service, hook) -> time.time()`` when it began."""

    began: dict[tuple[str, str], float] = field(default_factory=dict)
    threads: list[threading.Thread] = field(default_factory=list)


async def act(hook: Hook, where: str, journal: Journal) -> None:
    if hook.behaviour == "returns":
        return
    if hook.behaviour == "raises":
        raise RuntimeError(f"{where} failed on purpose")
    if hook.behaviour == "hangs":
        await anyio.sleep(3600)
    elif hook.behaviour == "ignores_cancel":
        with anyio.CancelScope(shield=True):
            await anyio.sleep(hook.hold)
    elif hook.behaviour == "blocks_thread":
        def block() -> None:
            journal.threads.append(threading.current_thread())
            time.sleep(hook.hold)

        await anyio.to_thread.run_sync(block)
    elif hook.behaviour == "system_exit":
        raise SystemExit(3)


class Generated(Service):
    restart = RestartPolicy(on="never")

    def __init__(self, spec: Spec, journal: Journal) -> None:
        super().__init__(name=spec.name, depends_on=spec.depends_on, optional=spec.optional,
                         start_timeout=spec.start_timeout)
        self.spec = spec
        self.journal = journal
        self.stop_stages = tuple(Stage(f"s{i}", deadline)
                                 for i, (deadline, _) in enumerate(spec.stages))

    async def _hook(self, what: str, hook: Hook) -> None:
        self.journal.began[(self.name, what)] = time.time()
        await act(hook, f"{self.name}.{what}", self.journal)

    async def start(self) -> None:
        await self._hook("start", self.spec.start)

    async def s0(self) -> None:
        await self._hook("s0", self.spec.stages[0][1])

    async def s1(self) -> None:
        await self._hook("s1", self.spec.stages[1][1])

    async def s2(self) -> None:
        await self._hook("s2", self.spec.stages[2][1])


class GeneratedWithRun(Generated):
    async def run(self) -> None:
        if self.spec.run.behaviour == "serves":
            await self.wait_shutdown()
            return
        await self._hook("run", self.spec.run)


# mostly short, sometimes longer than any budget: the chain-close bound needs both
hold = st.one_of(st.floats(0.05, 0.4), st.floats(0.05, 0.4), st.floats(1.0, 2.5))
hooks = st.builds(Hook, st.sampled_from(BEHAVIOURS), hold)


@st.composite
def scenarios(draw: st.DrawFn, max_services: int = 30) -> Scenario:
    n = draw(st.integers(1, max_services))
    chain = draw(st.booleans())  # a chain is where the close's bound was once lost
    specs: list[Spec] = []
    for i in range(n):
        earlier = [s.name for s in specs]
        if chain:
            deps = earlier[-1:]
        else:
            deps = draw(st.lists(st.sampled_from(earlier), max_size=3, unique=True)) if earlier else []
        stages = draw(st.lists(st.tuples(st.floats(0.05, 0.5), hooks), min_size=1, max_size=3))
        run = Hook(draw(st.sampled_from(RUN_BEHAVIOURS)), draw(hold))
        specs.append(Spec(f"svc{i}", tuple(deps), draw(st.booleans()), draw(st.floats(0.05, 0.5)),
                          draw(hooks), run, stages))
    widest = max(sum(d for d, _ in s.stages) for s in specs)
    budget = widest + draw(st.floats(0.0, 1.5))
    force = draw(st.one_of(st.none(), st.floats(0.0, 0.5)))
    return Scenario(specs, budget, draw(st.floats(0.0, 0.8)), force)


def _force(sup: Supervisor) -> None:
    """A second shutdown request, as a second SIGTERM would make it."""
    force = getattr(sup, "force_shutdown", None)
    if force is not None:
        force()
    else:
        sup._force(signal.SIGTERM)  # the engine's own entry for a second signal


async def _serve(scenario: Scenario, journal: Journal) -> tuple[Supervisor, list[Event],
                                                                  float, float, BaseException | None]:
    services = [(GeneratedWithRun if s.run.behaviour != "none" else Generated)(s, journal)
                for s in scenario.services]
    sup = Supervisor(services, shutdown_timeout=scenario.budget, log_report=False)
    events: list[Event] = []
    sup.subscribe(events.append)
    requested = [float("inf")]

    async def trigger() -> None:
        await anyio.sleep(scenario.shutdown_at)
        requested[0] = time.time()
        sup.request_shutdown("property test")
        if scenario.force_after is not None:
            await anyio.sleep(scenario.force_after)
            _force(sup)

    escaped: BaseException | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(trigger)
        try:
            await sup.serve(handle_signals=False)
        except BaseException as exc:  # nothing may escape serve(): recorded and asserted
            escaped = exc
        ended = time.time()
        tg.cancel_scope.cancel()
    return sup, events, requested[0], ended, escaped


def _close_began(events: list[Event], requested: float) -> float:
    """The moment the close was asked for: our request, or the supervisor's own."""
    asked = [e.at for e in events if isinstance(e, ShutdownRequested)]
    return min([requested, *asked])


def check_invariants(scenario: Scenario, journal: Journal, sup: Supervisor, events: list[Event],
                     requested: float, ended: float, escaped: BaseException | None) -> None:
    report = sup.report
    text = report.format()
    assert escaped is None, f"serve() let {escaped!r} escape"

    # serve() returns within the budget + the documented constant of the close's beginning
    began = _close_began(events, requested)
    if began != float("inf"):
        assert ended - began <= scenario.budget + CLOSE_CONSTANT + SLACK, (
            f"close took {ended - began:.2f}s with a {scenario.budget:.2f}s budget\n{text}")

    # no start() before its dependencies were running
    running = {e.service: e.at for e in events if isinstance(e, ServiceStarted)}
    by_name = {s.name: s for s in scenario.services}
    for (name, what), at in journal.began.items():
        if what == "start":
            for dep in by_name[name].depends_on:
                assert dep in running and running[dep] <= at, (
                    f"{name}.start began before its dependency {dep} was running")

    # no stop stage before every dependent finished stopping (ended, timed out or abandoned)
    stopped: dict[str, float] = {}
    for e in events:
        if isinstance(e, StageFinished) and e.service is not None:
            stopped[e.service] = max(stopped.get(e.service, 0.0), e.at)
    for spec in scenario.services:
        first = journal.began.get((spec.name, "s0"))
        if first is None:
            continue
        for other in scenario.services:
            if spec.name in other.depends_on and other.name in stopped:
                assert stopped[other.name] <= first + 0.001, (
                    f"{spec.name}.s0 began before its dependent {other.name} had stopped")

    # every hook that misbehaved is named with a non-ok outcome
    for spec in scenario.services:
        if (spec.name, "start") in journal.began and spec.start.behaviour in MISBEHAVING:
            record = report.startup.get(spec.name)
            misbehaved = spec.start.behaviour in ("raises", "hangs", "system_exit") or \
                spec.start.hold > spec.start_timeout * 1.25
            if record is not None and misbehaved and record.outcome not in ("cancelled", "skipped"):
                assert record.outcome != "ok", f"{spec.name}.start misbehaved but reads ok\n{text}"
        for i, (deadline, hook) in enumerate(spec.stages):
            if (spec.name, f"s{i}") not in journal.began or hook.behaviour == "returns":
                continue
            if hook.behaviour in ("ignores_cancel", "blocks_thread") and hook.hold <= deadline * 1.25:
                continue  # within (or too close to) its deadline to be called misbehaving
            stage = report.shutdown.get(spec.name, {}).get(f"s{i}")
            assert stage is not None and stage.outcome != "ok", (
                f"{spec.name}.s{i} ({hook.behaviour}) is not named as a culprit\n{text}")
            assert spec.name in text

    # the report is JSON-safe and its exit code follows the documented table
    json.dumps(report.to_dict())
    code = int(report.exit_code)
    if report.forced_by is not None:
        assert code == 128 + report.forced_by
    elif report.startup_failed:
        assert code == 1
    elif report.service_failed:
        assert code == 3
    elif report.culprits():
        assert code == 4
    else:
        assert code in (0, 5)

    # every thread still blocked in a hook after the close is named in the report
    for thread in journal.threads:
        if _blocked(thread):
            assert thread.name in text or "block" in text, (
                    f"thread {thread.name} is still blocked in a hook but the report does not "
                    f"name it\n{text}")


def _blocked(thread: threading.Thread) -> bool:
    """Is ``thread`` still inside a hook's blocking call (not idle in its pool)?"""
    frame = sys._current_frames().get(thread.ident or -1) if thread.is_alive() else None
    return frame is not None and "block" in {f.f_code.co_name for f in _stack(frame)}


def _stack(frame: Any) -> list[Any]:
    out = []
    while frame is not None:
        out.append(frame)
        frame = frame.f_back
    return out


@pytest.mark.timeout(300)
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
def test_generated_apps_keep_every_promise_of_the_close(backend: str, scenario: Scenario) -> None:
    journal = Journal()
    sup, events, requested, ended, escaped = anyio.run(_serve, scenario, journal, backend=backend)
    check_invariants(scenario, journal, sup, events, requested, ended, escaped)
    # let hooks still blocked in a thread finish before the next example (pool threads stay)
    give_up = time.monotonic() + 1.0
    while any(_blocked(t) for t in journal.threads) and time.monotonic() < give_up:
        time.sleep(0.01)
