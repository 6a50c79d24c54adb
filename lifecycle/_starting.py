"""The start plan: every service starts as soon as its dependencies run, under its deadline.

Part of :class:`~lifecycle.supervisor.Supervisor` (these functions are its ``_start``): a
required service that fails to start, or a shutdown requested meanwhile, ends the startup;
the close then stops what had started.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from ._backend import now
from ._phase import Phase
from ._supervisor_state import SupervisorState
from .events import AllStarted, ServiceDegraded, ServiceStarted, ServiceStartFailed, StartupFinished
from .fallback import Fallback
from .outcome import Outcome
from .report import StartRecord
from .service import Service

if TYPE_CHECKING:
    from ._plans import Plans
    from ._runtime import ServiceRuntime


async def start_all(sup: Plans) -> bool:
    """Start every service as soon as its dependencies run; False if startup failed."""
    sup._prepare()
    sup.state = SupervisorState.STARTING
    begin_leak_check(sup)
    began = now()
    awaited = {dep for svc in sup._by_name.values() for dep in svc.depends_on}
    done = {name: anyio.Event() for name in awaited}  # only what someone waits for
    records: dict[str, StartRecord] = {}
    cancelled = False
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(interrupt_starts_on_request, sup)
            async with anyio.create_task_group() as starters:
                for rt in sup._runtimes.values():  # (usually declared dependencies first)
                    if starts_at_once(rt, done):
                        await start_one(sup, rt, done, records)  # returns without an await
                    else:
                        starters.start_soon(start_one, sup, rt, done, records)
            tg.cancel_scope.cancel()
    except BaseException:
        cancelled = True
        await startup_cancelled(sup, records)
        raise
    finally:
        elapsed = now() - began
        sup.emit(StartupFinished(None, elapsed=elapsed, cancelled=cancelled, records=tuple(
            records[name] for name in sup._runtimes if name in records)))
    if sup.shutdown_requested or sup.report.startup_failed:
        if not sup.shutdown_requested:
            sup.request_shutdown("startup failed")
        return False
    for rt in sup._runtimes.values():
        if rt.started:
            rt.start_work()
            await rt.start_monitor()
    sup.state = SupervisorState.RUNNING
    sup.emit(AllStarted(None, elapsed=elapsed))
    return True

async def startup_cancelled(sup: Plans, records: dict[str, StartRecord]) -> None:
    """The caller cancelled us mid-startup: record every start that never finished, and
    cancel what the ones in flight spawned (the close then stops what had started)."""
    sup.request_shutdown("cancelled during startup")
    for rt in sup._runtimes.values():
        if rt.name in records:
            continue
        in_flight = rt.phase is Phase.STARTING and not rt.failed  # (not mid-discard)
        records[rt.name] = StartRecord(
            rt.name, Outcome.CANCELLED if in_flight else Outcome.SKIPPED, 0.0, rt.declared.start_timeout,
            optional=rt.declared.optional, began=now() - sup.origin,
            error="the supervisor was cancelled during startup" if in_flight
            else "startup was cancelled")
        if in_flight:
            with anyio.CancelScope(shield=True):
                await rt.start_cancelled()

def starts_at_once(rt: ServiceRuntime, done: dict[str, anyio.Event]) -> bool:
    """Nothing in this start would wait: its dependencies have started and it has no
    ``start()`` of its own to run. The start then needs no task of its own."""
    return (all(type(cand).start is Service.start for cand in rt.declared.members())
            and all(done[dep].is_set() for dep in rt.declared.depends_on))

async def interrupt_starts_on_request(sup: Plans) -> None:
    assert sup._requested is not None
    await sup._requested.wait()
    sup.jobs.interrupt_active()

async def start_one(sup: Plans, rt: ServiceRuntime, done: dict[str, anyio.Event],
                     records: dict[str, StartRecord]) -> None:
    try:
        for dep in rt.declared.depends_on:
            if not done[dep].is_set():  # wait() on a set event still yields a loop turn
                await done[dep].wait()  # bounded: every start has a deadline
        blocked = [d for d in rt.declared.depends_on if not sup._runtimes[d].started]
        if blocked or sup.shutdown_requested:
            why = (f"dependency {', '.join(map(repr, blocked))} did not start" if blocked
                   else "shutdown requested")
            records[rt.name] = StartRecord(
                rt.name, Outcome.SKIPPED, 0.0, rt.declared.start_timeout, optional=rt.declared.optional,
                error=why, began=now() - sup.origin)
            return
        rec = await rt.start()
        records[rt.name] = rec
        sup._check_handlers()  # a start may have installed its own signal handlers
        if rec.outcome == Outcome.OK:
            sup.emit(ServiceStarted.of(rec))
            if rec.degraded:
                sup.emit(ServiceDegraded(
                    rt.name, winner=rec.winner or "", preferred=rec.attempts[0].candidate,
                    reason=rec.attempts[0].error,
                    ready=not isinstance(rt.declared, Fallback) or rt.declared.degraded_ready))
            return
        sup.emit(ServiceStartFailed.of(rec))
        if not rt.declared.optional and not sup.shutdown_requested:
            sup.request_shutdown(f"required service {rt.name!r} failed to start")
    finally:
        if rt.name in done:
            done[rt.name].set()

def begin_leak_check(sup: Plans) -> None:
    if sup._leak_option is False or sup._leak_option is None:
        return
    from .leaks import LeakCheck

    check = LeakCheck() if sup._leak_option is True else sup._leak_option
    check.begin()
    sup._leaks = check

