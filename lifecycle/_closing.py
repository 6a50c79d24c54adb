"""The close plan: announce, drain, stop in reverse dependency order, check leaks, report.

Part of :class:`~lifecycle.supervisor.Supervisor` (these functions are its ``_close``).
One deadline, ``shutdown_timeout`` from the start of the close, caps every wait.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel

from ._backend import now
from ._bounded import Deadline
from ._supervisor_state import SupervisorState
from .events import (
    CloseFinished,
    CloseStarted,
    DetailsReported,
    LeaksChecked,
    ServiceStopped,
    Stopped,
)
from .observe import detach_observers
from .service import Service

if TYPE_CHECKING:
    from ._plans import Plans
    from ._runtime import ServiceRuntime


async def close_all(sup: Plans) -> None:
    """The cascading close: announce, stop in reverse dependency order, check leaks, report.

    One deadline (``shutdown_timeout`` from now) caps every wait in it, and every user
    hook is guarded: whatever a service does, the close ends, in time, with a report.
    """
    if sup._closed or sup._requested is None:
        return
    sup._closed = True
    was_ready = sup.state == SupervisorState.RUNNING  # only a ready app has traffic to drain
    sup.state = SupervisorState.STOPPING
    began = now()
    deadline = Deadline(began + sup.shutdown_timeout)
    sup.emit(CloseStarted(None, began=began - sup.origin, budget=sup.shutdown_timeout))
    sup.request_shutdown("closing")
    sup._check_handlers()
    try:
        await stop_all(sup, deadline, was_ready)
    finally:
        await finish_leak_check(sup, deadline)
        sup.state = SupervisorState.STOPPED
        sup.emit(CloseFinished(None, elapsed=now() - began))  # the report is complete
        sup.emit(Stopped(None, exit_code=int(sup.report.exit_code), ok=sup.report.ok))
        detach_observers(sup._detach)  # the run's observers saw Stopped: the report is complete

async def stop_all(sup: Plans, deadline: Deadline, was_ready: bool) -> None:
    for rt in sup._runtimes.values():
        rt.announce()
    await sup.reloads.close()
    await sup.cascades.close(deadline.remaining())  # a cascade in flight ends its step
    async with anyio.create_task_group() as tg:
        for rt in sup._runtimes.values():
            if rt.monitor_host is not None:
                tg.start_soon(rt.close_monitor)
    assert sup._forced is not None
    if sup.drain_delay and was_ready:
        sup._draining = True
        with anyio.move_on_after(min(sup.drain_delay, max(deadline.remaining(), 0.0))):
            await sup._forced.wait()
        sup._draining = False
    for rt in sup._runtimes.values():
        rt.end_drain()  # wait_drained() returns: the stop stages come next
    started = [rt for rt in sup._runtimes.values() if rt.started]
    await let_announced_work_end(started)
    stopped = {rt.name: anyio.Event() for rt in started if rt.declared.depends_on}
    async with anyio.create_task_group() as tg:
        for rt in reversed(started):  # dependents first, when declared after what they use
            if not waits_for(sup, rt, stopped) and closes_at_once(rt):
                await close_one(sup, rt, stopped, deadline)  # returns without an await
            else:
                tg.start_soon(close_one, sup, rt, stopped, deadline)
    for rt in started:
        if type(rt.active).report_details is Service.report_details:
            continue  # the inherited hook has no facts to give
        try:
            facts = rt.active.report_details()
        except Exception as exc:  # a user hook: recorded, and the close goes on
            sup.record_failure(rt.name, "report_details()", exc, "details left out")
            continue
        if facts:
            sup.emit(DetailsReported(rt.name, details=facts))

async def let_announced_work_end(started: list[ServiceRuntime]) -> None:
    """Give tasks that only had to wake up on the announcement the loop turn to end in.

    An idle ``@every`` loop or a ``wait_shutdown()`` ends in the turn after the stop is
    announced; once it has, its service closes at once, without a task or a wait of its
    own. Two turns at most (trio may run this task before the woken ones in a turn); what
    is still running then is closed under its deadlines as usual.
    """
    for _ in range(2):
        if all(rt.host is None or rt.host.idle for rt in started):
            return
        await anyio.lowlevel.cancel_shielded_checkpoint()

def closes_at_once(rt: ServiceRuntime) -> bool:
    """Nothing in this close would wait: no task running, no stop hook to run, no thread
    alive. The close then needs no task of its own."""
    svc = rt.active
    return ((rt.host is None or rt.host.idle) and not any(svc.does_work(s) for s in svc.stages())
            and not (rt.threads.items and rt.threads.alive()))

def waits_for(sup: Plans, rt: ServiceRuntime, stopped: dict[str, anyio.Event]) -> list[anyio.Event]:
    """What ``rt`` must wait for before it stops: its dependents still closing."""
    return [stopped[d] for d in sup._dependents[rt.name] if d in stopped and not stopped[d].is_set()]

async def close_one(sup: Plans, rt: ServiceRuntime, stopped: dict[str, anyio.Event],
                     deadline: Deadline) -> None:
    """Close one service once its dependents have stopped (as a task of its own when it
    has anything to wait for; called inline when it closes at once)."""
    try:
        waits = waits_for(sup, rt, stopped)
        if waits:  # (a scope only when there is something to wait for: most have none)
            with anyio.move_on_after(max(deadline.hard_remaining(), 0.0)):
                for event in waits:
                    await event.wait()
        assert sup._forced is not None
        records = await rt.close(deadline, sup._forced.is_set)
        sup.emit(ServiceStopped(rt.name, clean=all(r.clean for r in records.values()),
                                records=tuple(records.values())))
    finally:
        if rt.name in stopped:
            stopped[rt.name].set()

async def finish_leak_check(sup: Plans, deadline: Deadline) -> None:
    if sup._leaks is None:
        return
    left = 0.0 if sup._forced is not None and sup._forced.is_set() else deadline.hard_remaining()
    settle = min(float(sup._leaks.settle), max(left, 0.0), 1.0)
    if not math.isfinite(settle):
        settle = 0.0
    try:
        leaks = await sup._leaks.finish(settle=settle)
    except Exception as exc:  # a user-supplied LeakCheck: recorded, never fatal to the close
        sup.record_failure(sup.name, "leak check", exc)
        return
    sup.emit(LeaksChecked(None, leaks=leaks.redact(sup._secrets) if sup._secrets else leaks))
