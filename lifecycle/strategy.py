"""Restart strategies: which services restart with one that restarts, and in what order.

- ``one_for_one`` (the default): only the service itself.
- ``rest_for_one``: the service and every service that depends on it, transitively.
- ``one_for_all``: every service.

A *cascade* restarts such a group as a unit: the group is stopped in reverse dependency
order (each stop stage under its own deadline), then started in dependency order (each
``start()`` under ``start_timeout``), and its ``run()``, loops and health checks begin
again. Why a group: a dependent built its state (connections, caches, subscriptions) from
the dependency's; when the dependency restarts, that state is stale.

Cascades run one at a time, in a task the supervisor owns; the close waits for the step in
flight (never past its own deadline) and starts no further step.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Final

import anyio

from ._backend import now
from ._bounded import ABANDON_GRACE
from ._work import WorkHost
from .errors import ConfigError
from .events import (
    CascadeRestarted,
    CascadeRestarting,
    RestartFinished,
    ServiceStarted,
    ServiceStarting,
    ServiceStopped,
)
from .graph import levels
from .outcome import Outcome
from .report import CascadeRecord, RestartRecord
from .service import Service

if TYPE_CHECKING:
    from ._core import Runtime

log = logging.getLogger("lifecycle")

STRATEGIES: Final = ("one_for_one", "rest_for_one", "one_for_all")


def check_strategy(value: object, what: str) -> str:
    if value not in STRATEGIES:
        raise ConfigError(f"{what} must be one of {', '.join(STRATEGIES)}, not {value!r}")
    return str(value)


def start_order(by_name: dict[str, Service]) -> list[str]:
    """Every service, each after its dependencies (start levels, then declaration order)."""
    return [name for level in levels(by_name) for name in level]


def group_of(name: str, strategy: str, by_name: dict[str, Service],
             order: Sequence[str]) -> list[str]:
    """The services that restart when ``name`` restarts, in start order (``name`` included)."""
    if strategy == "one_for_all":
        return list(order)
    if strategy == "one_for_one":
        return [name]
    members = {name}
    for other in order:  # start order: a dependent comes after what it depends on
        if members.intersection(by_name[other].depends_on):
            members.add(other)
    return [n for n in order if n in members]


class _Request:
    def __init__(self, rt: Runtime, where: str, delay: float) -> None:
        self.rt = rt
        self.where = where
        self.delay = delay
        self.done = anyio.Event()
        self.outcome: tuple[str, str | None] = (Outcome.SKIPPED, "shutdown began during the restart")
        self.dropped = False  # the caller stopped waiting (its health monitor was closed)
        self.submitted = now()


class Cascades:
    """The supervisor's restart strategy: runs each restart that involves other services."""

    def __init__(self, runtimes: Mapping[str, Runtime], by_name: dict[str, Service],
                 default: str, shutdown: Callable[[], anyio.Event | None] = lambda: None) -> None:
        self._runtimes = runtimes
        self._shutdown = shutdown  # the supervisor's "shutdown requested" event
        self._by_name = by_name
        self.default = default
        self._order = start_order(by_name)
        self._lock: anyio.Lock | None = None
        self._host: WorkHost | None = None
        self._pending = 0
        self._idle: anyio.Event | None = None
        self._closing = False
        self._restarted_at: dict[str, float] = {}  # when a cascade last started each service

    def strategy_of(self, name: str) -> str:
        own = self._by_name[name].restart_strategy
        return own if own is not None else self.default

    def group(self, rt: Runtime) -> list[Runtime]:
        """``rt`` and the running services that restart with it, in start order."""
        names = group_of(rt.name, self.strategy_of(rt.name), self._by_name, self._order)
        return [self._runtimes[n] for n in names if n == rt.name or self._runtimes[n].serving]

    def cascades(self, rt: Runtime) -> bool:
        return len(self.group(rt)) > 1

    # ----- entry points --------------------------------------------------------------
    async def restart_soon(self, rt: Runtime, where: str, delay: float) -> None:
        """After ``rt``'s ``run()`` failed: restart its group (the caller's task then ends)."""
        await self._submit(_Request(rt, where, delay))

    def exclusive(self) -> anyio.Lock:
        """Held while a restart stops or starts services (a reload waits for it)."""
        return self._guard()

    async def restart(self, rt: Runtime, where: str) -> tuple[str, str | None]:
        """Restart ``rt`` (a health recovery, a failed reload), with its group if the
        strategy says so."""
        if not self.cascades(rt):
            async with self._guard():
                return await _restart_alone(rt, where)
        request = _Request(rt, where, 0.0)
        await self._submit(request)
        try:
            await request.done.wait()  # bounded: every step of a cascade has a deadline
        finally:
            request.dropped = not request.done.is_set()
        return request.outcome

    async def close(self, seconds: float) -> None:
        """The supervisor is closing: let the step in flight end (at most ``seconds``), then
        cancel what is left; queued cascades do not run."""
        self._closing = True
        if self._host is None:
            return
        if self._pending and self._idle is not None:
            with anyio.move_on_after(max(seconds, 0.0)):
                await self._idle.wait()
        host, self._host = self._host, None
        await host.close(0.0, ABANDON_GRACE)

    # ----- internals -------------------------------------------------------------------
    def _guard(self) -> anyio.Lock:
        if self._lock is None:
            self._lock = anyio.Lock()
        return self._lock

    async def _submit(self, request: _Request) -> None:
        if self._closing:
            request.done.set()
            return
        if self._host is None:
            core = request.rt.core
            self._host = WorkHost("restart-strategy", lambda where, exc: core.record_failure(
                "restart-strategy", where, exc))
            self._host.open(contextvars.copy_context())
        if self._pending == 0:
            self._idle = anyio.Event()
        self._pending += 1
        self._host.spawn(self._serve, (request,), f"cascade from {request.rt.name}")

    async def _serve(self, request: _Request) -> None:
        try:
            async with self._guard():
                again = self._restarted_at.get(request.rt.name, -1.0) >= request.submitted
                if again:  # a cascade queued before this one restarted it already
                    request.outcome = (Outcome.OK, "already restarted with the services it depends on")
                elif not request.dropped and not self._closing:
                    request.outcome = await self._cascade(request)
        finally:
            request.done.set()
            self._pending -= 1
            if self._pending == 0 and self._idle is not None:
                self._idle.set()

    def _stopping(self, rt: Runtime) -> bool:
        return self._closing or rt.core.shutdown_requested

    async def _cascade(self, request: _Request) -> tuple[str, str | None]:
        trigger, core = request.rt, request.rt.core
        strategy = self.strategy_of(trigger.name)
        group = self.group(trigger)
        if len(group) == 1 and request.where != "run":  # the others stopped meanwhile
            return await _restart_alone(trigger, request.where)
        names = [rt.name for rt in group]
        began = now()
        record = CascadeRecord(trigger.name, strategy, request.where, names,
                               began=began - core.origin)
        core.emit(CascadeRestarting(trigger.name, strategy=strategy, where=request.where,
                                    services=tuple(names), record=record))
        given_up = self._take_budgets(trigger, group, strategy)
        outcome, error = await self._stop_then_start(request, group, given_up)
        record.outcome, record.error, record.elapsed = outcome, error, now() - began
        core.emit(CascadeRestarted(trigger.name, strategy=strategy, outcome=outcome,
                                   elapsed=record.elapsed, error=error))
        return request.outcome

    def _take_budgets(self, trigger: Runtime, group: list[Runtime],
                      strategy: str) -> set[str]:
        """Each member restarts against its own budget (the trigger's was taken by the
        caller); a member whose budget is spent escalates as its policy says."""
        given_up: set[str] = set()
        for rt in group:
            if rt is trigger or rt.budget.try_take(now()):
                continue
            policy = rt.active.restart
            why = (f"more than {policy.max_restarts} restarts in {policy.window:g}s (restarted with "
                   f"{trigger.name!r}, {strategy})")
            rt.escalate("cascade", RuntimeError(f"{trigger.name!r} restarted"), why)
            given_up.add(rt.name)
        return given_up

    async def _stop_then_start(self, request: _Request, group: list[Runtime],
                               given_up: set[str]) -> tuple[str, str | None]:
        trigger, core = request.rt, request.rt.core
        for rt in reversed(group):
            if self._stopping(trigger):
                return Outcome.SKIPPED, "shutdown began during the cascade"
            if not (rt is trigger and request.where == "health"):
                await rt.close_monitor()  # the trigger's own monitor is what asked for this
            bad = await rt.stop_for_restart()
            core.emit(ServiceStopped(rt.name, clean=not bad))
        shutdown = self._shutdown()
        if request.delay > 0 and shutdown is not None and not self._stopping(trigger):
            with anyio.move_on_after(request.delay):  # the trigger's backoff, then the starts
                await shutdown.wait()
        failed: list[str] = []
        started: list[Runtime] = []
        for rt in group:
            if self._stopping(trigger):
                return Outcome.SKIPPED, "shutdown began during the cascade"
            blocked = [d for d in rt.declared.depends_on if d in failed or d in given_up]
            if rt.name in given_up:
                rt.give_up()
                failed.append(rt.name)
                continue
            if blocked:
                why = f"dependency {', '.join(map(repr, blocked))} did not start again"
                rt.give_up()
                if rt is trigger and request.where == "health":
                    request.outcome = (Outcome.SKIPPED, why)  # its monitor decides what follows
                else:
                    rt.escalate("cascade", RuntimeError(why), why)
                failed.append(rt.name)
                continue
            began = now()
            core.emit(ServiceStarting(rt.name, deadline=rt.active.start_timeout))
            outcome, error = await rt.start_again(work=False)
            if rt is trigger:
                request.outcome = (outcome, error)
            else:
                core.emit(RestartFinished.of(RestartRecord(
                    rt.name, "cascade", core.report.restarts.total(rt.name) + 1,
                    0.0, f"{trigger.name} {request.where} restarted ({self.strategy_of(trigger.name)})",
                    outcome, error, began - core.origin)))
            if outcome != Outcome.OK:
                if outcome != Outcome.SKIPPED and not (rt is trigger and request.where == "health"):
                    rt.escalate("cascade", RuntimeError(error or outcome),
                                f"start after the restart of {trigger.name!r} {outcome}")
                failed.append(rt.name)
                continue
            core.emit(ServiceStarted(rt.name, elapsed=now() - began))
            self._restarted_at[rt.name] = now()
            started.append(rt)
        for rt in started:  # as at startup: run() and loops once the whole group runs
            if self._stopping(trigger):
                break
            rt.start_work()
            if not (rt is trigger and request.where == "health"):
                await rt.start_monitor()
        if failed:
            return "failed", f"did not start again: {', '.join(failed)}"
        return Outcome.OK, None


async def _restart_alone(rt: Runtime, where: str) -> tuple[str, str | None]:
    """one_for_one: stop the service, start it again. A health recovery's monitor (the
    caller) keeps running and decides what a failed start means; otherwise the monitor
    pauses with the service, and a failed start escalates here."""
    caller_monitors = where == "health"
    if not caller_monitors:
        await rt.close_monitor()
    bad = await rt.stop_for_restart()
    outcome, error = await rt.start_again()
    if outcome != Outcome.OK:
        if not caller_monitors and outcome != Outcome.SKIPPED:
            rt.escalate(where, RuntimeError(error or outcome), f"start after a restart {outcome}")
        return outcome, error
    if not caller_monitors:
        await rt.start_monitor()
    note = ", ".join(f"{r.stage} {r.outcome}" for r in bad)
    return Outcome.OK, (f"stop before restart: {note}" if note else None)
