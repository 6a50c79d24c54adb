"""Reload: SIGHUP or ``Supervisor.request_reload()`` calls each service's ``reload()`` hook.

Services reload one at a time in dependency order (a dependent after what it depends on),
each under its ``reload_timeout``. A reload that fails, overruns or hangs is recorded (report
and ``ServiceReloaded`` event) and then handled as the service's ``on_reload_failure`` says:
``"continue"`` (keep running on what it had), ``"restart"`` (a restart, against its restart
budget and with its restart strategy) or ``"shutdown"`` (exit code 3).

Requests that arrive while a reload runs are merged into one more reload after it; requests
before startup completed run once it has; requests once shutdown began are ignored. Under
systemd the notifier turns ``ReloadRequested``/``ReloadFinished`` into ``RELOADING=1`` and
``READY=1`` (``Type=notify-reload``).
"""

from __future__ import annotations

import contextvars
import logging
import signal
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, Literal, Protocol

import anyio
import anyio.abc

from ._backend import now
from ._bounded import ABANDON_GRACE, Result
from ._core import Core
from ._listeners import only
from ._work import WorkHost
from .errors import ConfigError
from .events import AllStarted, Event, ReloadFinished, ReloadRequested, ServiceReloaded
from .outcome import Outcome
from .policy import RestartBudget
from .report import ReloadRecord
from .strategy import start_order

if TYPE_CHECKING:
    from ._runtime import ServiceRuntime

log = logging.getLogger("lifecycle")

OnReloadFailure = Literal["continue", "restart", "shutdown"]
ON_RELOAD_FAILURE: Final = ("continue", "restart", "shutdown")


def check_on_reload_failure(value: object, what: str) -> None:
    if value not in ON_RELOAD_FAILURE:
        raise ConfigError(f"{what} must be one of {', '.join(ON_RELOAD_FAILURE)}, not {value!r}")


class Reloading(Core, Protocol):
    """What the reloads use of their supervisor (a ``Supervisor``, which imports this module)."""

    @property
    def _runtimes(self) -> Mapping[str, ServiceRuntime]: ...


class Reloader:
    """The supervisor's reloads: one task, started on the first request."""

    def __init__(self, sup: Reloading) -> None:
        self._sup = sup
        self._order = start_order({s.name: s for s in sup.services})
        self._host: WorkHost | None = None
        self._wake: anyio.Event | None = None
        self._reasons: list[str] = []
        self._closing = False
        self._running = False
        sup.subscribe(only((AllStarted,), self._on_event))

    # ----- requests ----------------------------------------------------------------------
    def request(self, reason: str) -> None:
        """Queue a reload (on the event loop's thread)."""
        sup = self._sup
        if self._closing or sup.shutdown_requested:
            log.info("reload (%s) ignored: the app is shutting down", reason)
            return
        self._reasons.append(reason)
        if sup.state.value == "running":
            self._kick()
        else:
            log.info("reload (%s) will run once every service has started", reason)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, AllStarted) and self._reasons:
            self._kick()

    def _kick(self) -> None:
        if self._host is None:
            self._host = WorkHost("reload", lambda where, exc: self._sup.record_failure(
                "reload", where, exc))
            self._host.open(contextvars.copy_context())
            self._wake = anyio.Event()
            self._host.spawn(self._serve, (), "reloads")
        assert self._wake is not None
        self._wake.set()

    async def watch_sighup(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """SIGHUP asks for a reload (instead of ending the process)."""
        with anyio.open_signal_receiver(signal.SIGHUP) as signals:
            task_status.started()
            async for _ in signals:
                self.request("signal SIGHUP")

    async def close(self) -> None:
        """Shutdown began: a reload in flight is cancelled (recorded so), no other starts."""
        self._closing = True
        if self._host is not None:
            host, self._host = self._host, None
            await host.close(0.0, ABANDON_GRACE)

    # ----- the reloads ---------------------------------------------------------------------
    async def _serve(self) -> None:
        while True:
            assert self._wake is not None
            await self._wake.wait()
            self._wake = anyio.Event()
            if not self._reasons or self._closing:
                continue
            reasons, self._reasons = self._reasons, []
            await self._reload("; ".join(dict.fromkeys(reasons)))

    async def _reload(self, reason: str) -> None:
        sup = self._sup
        runtimes = [sup._runtimes[name] for name in self._order]
        chosen = [rt for rt in runtimes if rt.started and rt.active.has_reload]
        began = now()
        worst = sum(rt.active.reload_timeout + ABANDON_GRACE for rt in chosen)
        sup.emit(ReloadRequested(None, reason=reason, services=tuple(rt.name for rt in chosen),
                                 deadline=worst))
        failed: list[ServiceRuntime] = []
        async with sup.cascades.exclusive():  # never while a restart stops or starts services
            for rt in chosen:
                if not await self._reload_one(rt, reason):
                    failed.append(rt)
        for rt in failed:
            await self._escalate(rt)
        sup.emit(ReloadFinished(None, failed=tuple(rt.name for rt in failed), elapsed=now() - began))

    async def _reload_one(self, rt: ServiceRuntime, reason: str) -> bool:
        sup, svc = self._sup, rt.active
        began = now()
        deadline = float(svc.reload_timeout)
        if sup.shutdown_requested or svc.state.value != "running":
            res = Result(Outcome.SKIPPED, 0.0)
            error: str | None = ("shutdown began" if sup.shutdown_requested
                                 else f"service is {svc.state.value}")
        else:
            try:
                res = await sup.jobs.run(svc.reload, deadline=deadline, context=rt.context,
                                         label=f"{rt.name}.reload")
            except anyio.get_cancelled_exc_class():
                self._record(rt, Result(Outcome.CANCELLED, now() - began), "shutdown began", reason, began)
                raise
            error = rt.explain(res, "reload()", deadline)
        self._record(rt, res, error, reason, began)
        if res.outcome in (Outcome.OK, Outcome.SKIPPED):
            return True
        sup.record_failure(rt.name, "reload", res.error or RuntimeError(error or res.outcome),
                           _action(svc.on_reload_failure))
        return False

    def _record(self, rt: ServiceRuntime, res: Result, error: str | None, reason: str,
                began: float) -> None:
        sup = self._sup
        deadline = float(rt.active.reload_timeout)
        error = sup.scrub(error)
        sup.emit(ServiceReloaded.of(ReloadRecord(rt.name, res.outcome, res.elapsed, deadline, error,
                                                 sup.scrub(res.stack), began - sup.origin, reason)))

    async def _escalate(self, rt: ServiceRuntime) -> None:
        sup, svc = self._sup, rt.active
        why = f"reload of {rt.name!r} failed"
        if svc.on_reload_failure == "shutdown" and not sup.shutdown_requested:
            sup.request_shutdown(why, failed=True)
        elif svc.on_reload_failure == "restart" and not sup.shutdown_requested:
            budget: RestartBudget = rt.budget
            if not budget.try_take(now()):
                policy = svc.restart
                rt.escalate("reload", RuntimeError(why),
                            f"more than {policy.max_restarts} restarts in {policy.window:g}s")
                return
            await rt.restart("reload")


def _action(mode: str) -> str:
    return {"continue": "kept running without the reload", "restart": "restarting",
            "shutdown": "shutting down"}[mode]
