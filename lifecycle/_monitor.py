"""Health checks with grace and cooldown, and recoveries that cannot repeat forever.

The incident this exists for: a guardian scanned every second, "recovered" a table, then
scanned the freshly created table before it was initialised, flagged it again and
recovered again. Here:

- a check's result is ignored for ``grace_period`` after a start or a recovery (a new
  resource is not judged before it had time to initialise);
- no check runs during the pause after a recovery: ``cooldown``, doubled for each earlier
  recovery of the same incident (``RestartPolicy.recovery_pause``);
- only ``failure_threshold`` *consecutive* counted failures trigger a recovery;
- an **incident** lasts from the first counted failure until the checks have passed for the
  policy's stable period. A recovery inside it has not restored health until then, so after
  ``max_recoveries`` recoveries the next trigger escalates (the policy's ``then``), however
  far apart they were. Recoveries also draw from the ``max_restarts``/``window`` budget;
- an incident raises one ``HealthAlert``, however many scans and recoveries it spans, and an
  escalation one ``ServiceEscalated`` saying why.

Memory: a monitor holds a fixed set of scalars (no per-check or per-incident history); the
counts live in the report's ``ServiceCounts``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._backend import now
from .events import HealthAlert, HealthRestored, HealthUpdated, RestartFinished, ServiceRecovering
from .health import Health
from .outcome import Outcome
from .report import RestartRecord
from .service import Service

if TYPE_CHECKING:
    from ._core import Runtime


def has_check(svc: Service) -> bool:
    return type(svc).check is not Service.check


def has_recover(svc: Service) -> bool:
    return callable(getattr(type(svc), "recover", None))


class Monitor:
    """The health loop of one service; runs in the runtime's monitor host."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        svc = rt.active
        self.stable_period = svc.restart.health_stable_period(svc.grace_period, svc.check_interval)
        self.healthy: bool | None = None
        self.reason = ""
        self.failures = 0  # consecutive counted failures
        self.recoveries = 0  # in the whole run
        self.in_incident = False
        self.incident_recoveries = 0  # recoveries in the open incident; none has restored health yet
        self.healthy_since: float | None = None  # first passing check of the open incident's calm
        self.escalation: str | None = None
        self.failed_checks = 0  # every failed check, counted or in the grace period
        self._published: dict[str, Any] | None = None  # the view last emitted
        self._publish()

    @property
    def recovering(self) -> bool:
        """In an incident that has had a recovery, and not yet stable again."""
        return self.in_incident and self.incident_recoveries > 0

    def view(self) -> dict[str, Any]:
        """This monitor's part of ``Supervisor.health()`` and of ``report.health`` (JSON-safe)."""
        return {"healthy": self.healthy, "reason": self.reason, "incident": self.in_incident,
                "consecutive_failures": self.failures, "recoveries": self.recoveries,
                "recovering": self.recovering, "incident_recoveries": self.incident_recoveries,
                "max_recoveries": self.rt.active.restart.max_recoveries,
                "stable_period": self.stable_period,
                "escalated": self.escalation is not None, "escalation": self.escalation,
                "failed_checks": self.failed_checks}

    def _publish(self) -> None:
        view = self.view()
        if view != self._published:  # one event per change, not one per passing check
            self._published = view
            self.rt.core.emit(HealthUpdated(self.rt.name, view=view))

    async def run(self) -> None:
        rt = self.rt
        svc = rt.active
        core = rt.core
        grace_until = now() + svc.grace_period
        while await rt.monitor_sleep(svc.check_interval):
            res = await core.jobs.run(svc.check, deadline=svc.check_timeout, context=rt.context,
                                      label=f"{rt.name}.check")
            healthy, reason = _verdict(res.outcome, res.value, core.describe(res.error), svc)
            reason = core.scrub(reason) or ""  # a check's own reason may quote a secret
            self.healthy, self.reason = healthy, reason
            self.failed_checks += not healthy
            if now() < grace_until:  # a new resource is not judged before it could initialise
                self._publish()
                continue
            if healthy:
                self._passed()
                continue
            self.failures += 1
            self.healthy_since = None
            if not self.in_incident:
                self.in_incident = True
                core.emit(HealthAlert(rt.name, reason=reason, failures=self.failures))
            self._publish()
            if self.failures < svc.failure_threshold:
                continue
            if not await self._recover_or_escalate(reason):
                return
            self.failures = 0
            grace_until = now() + svc.grace_period
            pause = svc.restart.recovery_pause(self.incident_recoveries, svc.cooldown)
            if not await rt.monitor_sleep(pause):
                return

    def _passed(self) -> None:
        """A counted passing check: the incident ends once they have lasted the stable period."""
        self.failures = 0
        if self.in_incident:
            at = now()
            if self.healthy_since is None:
                self.healthy_since = at
            if at - self.healthy_since >= self.stable_period:
                recoveries = self.incident_recoveries
                self.in_incident, self.incident_recoveries, self.healthy_since = False, 0, None
                self.rt.core.emit(HealthRestored(self.rt.name, recoveries=recoveries))
        self._publish()

    async def _recover_or_escalate(self, reason: str) -> bool:
        """One recovery, or the escalation when a limit is reached; False to stop checking."""
        rt = self.rt
        policy = rt.active.restart
        why = None
        if self.incident_recoveries >= policy.max_recoveries:
            count = self.incident_recoveries
            why = (f"{count} recover{'y' if count == 1 else 'ies'} of {rt.name!r} did not restore health "
                   f"(checks must pass for {self.stable_period:g}s; last: {reason})")
        elif not rt.budget.try_take(now()):
            why = f"more than {policy.max_restarts} recoveries/restarts in {policy.window:g}s"
        if why is not None:
            self.escalation = why
            self._publish()
            rt.escalate("health", RuntimeError(f"unhealthy: {reason}"), why)
            return False
        ok = await self.recover(reason)
        self._publish()
        return ok

    async def recover(self, reason: str) -> bool:
        """``recover()`` if the service defines it, else a full restart; False to stop checking."""
        rt = self.rt
        svc = rt.active
        self.recoveries += 1
        self.incident_recoveries += 1
        method = "recover" if has_recover(svc) else "restart"
        rt.core.emit(ServiceRecovering(rt.name, attempt=self.recoveries, method=method, reason=reason))
        began = now()
        outcome: str  # an Outcome, or a restart strategy's "failed"
        if method == "recover":
            res = await rt.core.jobs.run(svc.recover, deadline=svc.start_timeout,  # type: ignore[attr-defined]
                                         context=rt.context, label=f"{rt.name}.recover")
            outcome, error = res.outcome, rt.core.describe(res.error)
            if outcome != Outcome.OK and res.error is not None:
                rt.core.record_failure(rt.name, "recover", res.error, "recovery failed")
        else:
            outcome, error = await rt.restart()
        rt.core.emit(RestartFinished.of(RestartRecord(  # logged as a WARNING by lifecycle.logs
            rt.name, "health", self.recoveries, 0.0, f"{method}: {reason}", outcome, error,
            began - rt.core.origin)))
        if outcome == Outcome.OK or method == "recover":
            return True  # a failed recover() is one more recovery that did not help
        if not rt.core.shutdown_requested:  # the service could not be started again
            self.escalation = f"restart to recover {rt.name!r} {outcome}: {error}"
            rt.escalate("health", RuntimeError(error or outcome), self.escalation)
        return False


def _verdict(outcome: str, value: object, error: str | None, svc: Service) -> tuple[bool, str]:
    if outcome != Outcome.OK:
        return False, error or f"check() {outcome} (deadline {svc.check_timeout:g}s)"
    if isinstance(value, Health):
        return value.ok, value.reason
    return bool(value), "" if value else "check() returned False"
