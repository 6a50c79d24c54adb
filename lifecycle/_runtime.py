"""The supervisor's side of one service: start attempts, owned work, restarts, staged close."""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import anyio

from ._backend import now
from ._bounded import ABANDON_GRACE, UNBOUNDED, Deadline, Result, unwrap
from ._context import current_service
from ._core import Core
from ._monitor import Monitor, has_check
from ._phase import NEXT, PUBLIC, STAGES_RAN, STARTED, Phase
from ._roles import SupervisorView
from ._stoptoken import Stop, StopToken
from ._supervised import EXIT_REQUESTS, run_loop, supervised
from ._work import OwnedThreads, WorkHost
from .events import ServiceEscalated, ServiceStarting, StageFinished
from .fallback import Fallback
from .outcome import Outcome
from .policy import RestartBudget
from .report import Attempt, StageRecord, StartRecord
from .service import Service, ServiceState
from .stacks import thread_stacks

log = logging.getLogger("lifecycle")


class ServiceRuntime:
    """One declared service (or Fallback) inside a running supervisor.

    Its :class:`~lifecycle._phase.Phase` changes only in :meth:`_enter`, which also sets
    the public ``Service.state``. Each field's invariant is written next to it.
    """

    def __init__(self, declared: Service, supervisor: Core) -> None:
        self.name = declared.name
        self.declared = declared  # as listed: a Service, or a Fallback whose members are tried
        self.supervisor: SupervisorView[Service] = supervisor  # what Service.supervisor returns
        self.core: Core = supervisor  # the same object, seen through what the engine needs
        self.context = contextvars.copy_context()  # every hook and task of it runs in this
        self.context.run(current_service.set, self.name)
        self.budget = RestartBudget(declared.restart)  # shared by restarts and recoveries
        self.phase = Phase.NEW  # changed by _enter only (the transitions: lifecycle/_phase.py)
        # True from a failure (a failed start attempt, a give-up) until the next attempt
        # begins; while True, Service.state shows FAILED whatever the phase
        self.failed = False
        self.active = declared  # the member of the current or last attempt (once started: the winner)
        self.token = StopToken()  # handed to ``active`` at its attempt: a fresh one for each
        # not None exactly while an attempt's work may run: from its begin (STARTING or
        # RESTARTING) through RUNNING until the close wound the tasks down (STOPPING) or
        # the failed attempt was discarded
        self.host: WorkHost | None = None
        self.threads = OwnedThreads()  # a fresh set at each restart; joined by close()
        self.monitor: Monitor | None = None  # from the first start_monitor(); kept for health()
        self.monitor_host: WorkHost | None = None  # not None exactly while the monitor runs

    def _enter(self, phase: Phase, *, failed: bool | None = None) -> None:
        """The one place the phase changes (``failed``: a failure shows, or an attempt
        begins afresh); sets the public state of the active service (and, when no
        candidate started, of the declared one)."""
        assert phase is self.phase or phase in NEXT[self.phase], (self.name, self.phase, phase)
        self.phase = phase
        if failed is not None:
            self.failed = failed
        state = ServiceState.FAILED if self.failed else PUBLIC[phase]
        self.active.state = state
        if phase is Phase.START_FAILED:
            self.declared.state = state

    @property
    def started(self) -> bool:
        """It started at least once: it is resolved by name, and closed at the end."""
        return self.phase in STARTED

    @property
    def serving(self) -> bool:
        """Started, not given up, not stopped for a restart (a stop under way still counts):
        it restarts with its group."""
        return self.phase in (Phase.RUNNING, Phase.STOPPING, Phase.STOPPED) and not self.failed

    def health_view(self) -> dict[str, Any]:
        """This service's part of ``Supervisor.health()``."""
        view: dict[str, Any] = {}
        if self.active is not self.declared:
            view["winner"] = self.active.name
        if self.monitor is not None:
            view.update(self.monitor.view())
        return view

    # ----- what Service helpers call ---------------------------------------------------
    def spawn(self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], name: str) -> None:
        if self.host is None:
            raise RuntimeError(f"service {self.name!r} cannot spawn {name!r} before it starts")
        self.host.spawn(fn, args, name)

    def spawn_thread(self, target: Callable[..., Any], args: tuple[Any, ...], label: str,
                     daemon: bool) -> threading.Thread:
        return self.threads.start(target, args, f"{self.name}.{label}", daemon, self.context,
                                  self._task_failed, self.token.is_set())

    def dependency(self, name: str) -> Service:
        return self.core.resolve(name)

    @property
    def degraded(self) -> bool:
        """A Fallback running on a lesser candidate."""
        chain = self.declared
        return self.started and isinstance(chain, Fallback) and chain.is_degraded(self.active)

    def request_shutdown(self, reason: str) -> None:
        self.core.request_shutdown(reason)

    def _task_failed(self, where: str, exc: BaseException) -> None:
        if isinstance(unwrap(exc), EXIT_REQUESTS) and not where.startswith("thread "):
            self.fail(where, unwrap(exc), f"raised {type(unwrap(exc)).__name__}")
            return
        self.core.record_failure(self.name, where, exc)

    # ----- start ----------------------------------------------------------------------
    async def start(self) -> StartRecord:
        """Try each member under its own deadline; the first that starts is the service."""
        began = now()
        attempts: list[Attempt] = []
        members = self.declared.members()
        chain = members != (self.declared,)
        for cand in members:
            if self.core.shutdown_requested:
                break
            res, error = await self._attempt(cand, Phase.STARTING, chain)
            attempts.append(Attempt(cand.name, res.outcome, res.elapsed, error,
                                    self.core.scrub(res.stack)))
            if res.outcome == Outcome.OK:
                break
        if not self.started:
            self._enter(Phase.START_FAILED, failed=True)
        last = attempts[-1] if attempts else Attempt(self.name, Outcome.SKIPPED, 0.0, "shutdown requested")
        return StartRecord(
            service=self.name, outcome=Outcome.OK if self.started else last.outcome,
            elapsed=now() - began, deadline=self.declared.start_timeout,
            began=began - self.core.origin,
            optional=self.declared.optional, error=None if self.started else last.error,
            stack=None if self.started else last.stack,
            winner=self.active.name if self.started and chain else None,
            attempts=attempts if chain else [])

    async def _attempt(self, cand: Service, phase: Phase, chain: bool = False) -> tuple[Result, str | None]:
        """One start of ``cand`` under its deadline: the first start's (``STARTING``, each
        member of a chain in turn) or a restart's (``RESTARTING``). It gets a fresh stop
        token; failed, it shows FAILED and what it spawned is discarded at once."""
        self.active = cand
        self.token = StopToken()
        cand._attempt_begins(self, self.token)
        self._enter(phase, failed=False)
        if phase is Phase.STARTING:
            self.core.emit(ServiceStarting(self.name, candidate=cand.name if chain else None,
                                           deadline=cand.start_timeout))
        self.host = WorkHost(self.name, self._task_failed)
        self.host.open(self.context)
        if type(cand).start is Service.start:
            res = Result(Outcome.OK, 0.0)  # the inherited no-op
        else:
            res = await self.core.jobs.run(cand.start, deadline=cand.start_timeout,
                                           context=self.context, label=f"{self.name}.start")
        error = self.explain(res, "start()", cand.start_timeout)
        if res.outcome == Outcome.OK:
            self._enter(Phase.RUNNING)
            return res, error
        self._enter(phase, failed=True)
        if phase is Phase.STARTING:
            log.warning("service %r: candidate %r start %s after %.2fs: %s", self.name,
                        cand.name, res.outcome, res.elapsed, error)
        await self.discard_attempt()
        return res, error

    async def discard_attempt(self) -> None:
        """A failed attempt: stop what it spawned at once, so the next one starts clean."""
        self.token.set(Stop.FOR_GOOD)
        self.threads.announce()
        if self.host is not None:
            await self.host.close(0.0, ABANDON_GRACE)
            self.host = None

    async def start_cancelled(self) -> None:
        """Cancelled while this first start was in flight: FAILED, its work cancelled."""
        self._enter(Phase.STARTING, failed=True)
        await self.discard_attempt()
        self._enter(Phase.START_FAILED)

    def explain(self, res: Result, what: str, deadline: float) -> str | None:
        if res.outcome == Outcome.ERROR:
            return self.core.describe(res.error)
        if res.outcome == Outcome.TIMEOUT:
            return f"{what} did not finish within {deadline:.3g}s"
        if res.outcome == Outcome.ABANDONED:
            if res.interrupted:
                return (f"{what} ignored cancellation when the shutdown interrupted it after "
                        f"{res.elapsed:.2f}s")
            return f"{what} ignored cancellation after its {deadline:.3g}s deadline"
        if res.outcome == Outcome.OK:
            return None
        return self.core.describe(res.error) or f"{what} {res.outcome}"

    # ----- run ------------------------------------------------------------------------
    def start_work(self) -> None:
        """Begin ``run()`` and the ``@every`` loops (after every service has started)."""
        svc = self.active
        if svc.has_run:
            self.spawn(supervised, (self, "run", svc.run), "run")
        for attr, spec in svc.loops.items():
            done = [0]  # bodies completed since the loop's last (re)start
            self.spawn(supervised, (self, f"loop {attr}", partial(run_loop, svc, attr, spec, done),
                                    done), attr)
        if isinstance(self.declared, Fallback):  # its recheck of the preferred candidates
            for label, work in self.declared.background(svc):
                self.spawn(work, (), label)

    def escalate(self, where: str, exc: BaseException, why: str) -> None:
        """A restart or recovery limit is reached: shut the app down, or give up on this service."""
        svc = self.active
        action = "give_up" if svc.optional or svc.restart.then == "give_up" else "shutdown"
        self.core.emit(ServiceEscalated(self.name, where=where, reason=why, action=action))
        self.fail(where, exc, why, escalate=True)

    def fail(self, where: str, exc: BaseException, why: str, escalate: bool = False) -> None:
        """A failure that ends this service: give up on it (optional, policy), else shut down."""
        svc = self.active
        give_up = svc.optional or (escalate and svc.restart.then == "give_up")
        action = f"{why}; service FAILED" if give_up else f"{why}; shutting down"
        self.core.record_failure(self.name, where, exc, action)
        if give_up:
            self.give_up()
        else:
            self.core.request_shutdown(f"{where} of {self.name!r} failed: {why}", failed=True)

    def give_up(self) -> None:
        """FAILED from now on, in whatever phase (its work is still closed at the end)."""
        self._enter(self.phase, failed=True)

    # ----- health --------------------------------------------------------------------
    async def start_monitor(self) -> None:
        if not has_check(self.active):
            return
        self.monitor = Monitor(self)
        self.monitor_host = WorkHost(f"{self.name}.monitor", self._task_failed)
        self.monitor_host.open(self.context)
        self.monitor_host.spawn(self.monitor.run, (), "health")

    async def monitor_sleep(self, seconds: float) -> bool:
        """Sleep unless the service was told to stop; True when the full time passed."""
        token = self.token  # (a restart, which brings a new one, never happens in a sleep)
        if token.is_set():
            return False
        with anyio.move_on_after(seconds):
            await token.wait()
            return False
        return True

    async def close_monitor(self) -> None:
        """First thing at close: no check or recovery may race with the stop stages."""
        if self.monitor_host is not None:
            host, self.monitor_host = self.monitor_host, None
            await host.close(0.0, ABANDON_GRACE)

    async def restart(self, where: str = "health") -> tuple[str, str | None]:
        """Stop this service (tasks, stages) and start it again; for health recovery (or a
        failed reload). The restart strategy may restart others with it (``lifecycle.strategy``)."""
        return await self.core.cascades.restart(self, where)

    async def stop_for_restart(self) -> list[StageRecord]:
        """Stop owned work and run the stop stages (each under its own deadline); the
        unclean records."""
        self.token.set(Stop.RESTART)
        self.threads.announce()
        stops = await self.close(UNBOUNDED, lambda: self.core.shutdown_requested,
                                 then=Phase.STOPPED_FOR_RESTART)
        return [r for r in stops.values() if not r.clean]

    async def start_again(self, work: bool = True) -> tuple[str, str | None]:
        """``start()`` after :meth:`stop_for_restart`, then (``work``) run() and loops."""
        if self.core.shutdown_requested:
            return Outcome.SKIPPED, "shutdown began during the restart"
        self.threads = OwnedThreads()
        res, error = await self._attempt(self.active, Phase.RESTARTING)
        if res.outcome != Outcome.OK:
            self._enter(Phase.STOPPED_FOR_RESTART)  # (FAILED shows)
            return res.outcome, error
        if self.core.shutdown_requested:
            self.token.set(Stop.FOR_GOOD)  # started, but the close is next: no work to begin
        elif work:
            self.start_work()
        return Outcome.OK, None

    # ----- close ----------------------------------------------------------------------
    def announce(self) -> None:
        """The close begins: the service, its monitor and its threads are told to stop."""
        self.token.set(Stop.FOR_GOOD)
        self.threads.announce()

    def end_drain(self) -> None:
        """The drain is over: ``wait_drained()`` returns, the stop stages come next."""
        self.token.end_drain()

    async def close(self, deadline: Deadline, forced: Callable[[], bool],
                    then: Phase = Phase.STOPPED) -> dict[str, StageRecord]:
        """Wind down owned work, then run each stop stage; every wait capped by ``deadline``.

        What finds no budget left is recorded ``skipped`` (stages) or cancelled without a
        wait (tasks), named, never waited for.
        """
        svc = self.active
        self.token.end_drain()  # also for a restart, which has no drain
        stages_ran = self.phase in STAGES_RAN
        self._enter(Phase.STOPPING)
        stages = svc.stages()
        began = now()
        records: dict[str, StageRecord] = {}
        host = self.host
        if host is not None:  # stays reachable for a forced shutdown until it is closed
            first = svc.tasks_deadline()
            wait = min(first, max(deadline.remaining(), 0.0))
            res = await host.close(wait, deadline.grace_after(wait))
            self.host = None
            if host.spawned or res.outcome != Outcome.OK:
                why = None
                if wait <= 0 and res.outcome != Outcome.OK and not forced():
                    why = (f"{self.core.describe(res.error)} (cancelled at once: no time left in "
                           "the shutdown budget)")
                records["tasks"] = self._record("tasks", first, res, why)
        for stage in stages:
            budget = deadline.remaining()
            if stages_ran:
                records[stage.name] = self._record(stage.name, stage.timeout, Result(Outcome.OK, 0.0),
                                                   "already stopped for a restart that did not finish")
                continue
            if forced() or budget <= 0:
                why = "forced shutdown" if forced() else "no time left in the shutdown budget"
                records[stage.name] = self._record(stage.name, stage.timeout, Result(Outcome.SKIPPED, 0.0),
                                                   why)
                continue
            wait = min(stage.timeout, budget)
            method = getattr(svc, stage.name)
            if getattr(method, "__func__", None) is Service.stop:
                res = Result(Outcome.OK, 0.0)  # the inherited no-op: nothing to run or bound
            else:
                res = await self.core.jobs.run(method, deadline=wait, context=self.context,
                                               label=f"{self.name}.{stage.name}",
                                               grace=deadline.grace_after(wait))
            records[stage.name] = self._record(stage.name, stage.timeout, res,
                                               self.explain(res, f"{stage.name}()", wait))
        if self.threads.items:
            own_end = began + sum(s.timeout for s in stages) + (svc.tasks_timeout or 0.0)
            t0 = now()
            alive = await self.threads.join(min(own_end - t0, deadline.remaining()), forced)
            res = Result(Outcome.ABANDONED if alive else Outcome.OK, now() - t0,
                         stack=thread_stacks(alive) if alive else None)
            why = f"{len(alive)} thread(s) would not end: " + ", ".join(t.name for t in alive)
            records["threads"] = self._record("threads", own_end - began, res, why if alive else None)
        self._enter(then)
        return records

    def _record(self, stage: str, deadline: float, res: Result, error: str | None = None) -> StageRecord:
        if error is None and res.error is not None:
            error = self.core.describe(res.error)
        began = now() - res.elapsed - self.core.origin
        rec = StageRecord(self.name, stage, deadline, res.elapsed, res.outcome,
                          self.core.scrub(error), self.core.scrub(res.stack), began)
        # one log line per overrun as it happens: the StageFinished event's (lifecycle.logs)
        self.core.emit(StageFinished.of(rec))
        return rec
