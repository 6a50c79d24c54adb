"""Health checks with grace and cooldown, and recovery that cannot loop forever.

The incident this exists for: a guardian scanned every second, "recovered" a table, then
scanned the freshly created table before it was initialised, flagged it again and
recovered again. Here:

- a check's result is ignored for ``grace_period`` after a start or a recovery (a new
  resource is not judged before it had time to initialise);
- no check runs during ``cooldown`` after a recovery;
- only ``failure_threshold`` *consecutive* counted failures trigger a recovery;
- every recovery draws from the same restart budget as crash restarts
  (``max_restarts`` per ``window``); when it is empty the policy escalates. So an endless
  recovery loop is impossible by construction;
- an incident (from the first counted failure to the next healthy check) raises one
  ``HealthAlert``, however many scans and recoveries it spans.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ._bounded import OK, now
from .events import HealthAlert, HealthRestored, ServiceRecovering
from .health import Health
from .report import RestartRecord
from .service import Service

if TYPE_CHECKING:
    from ._runtime import ServiceRuntime

log = logging.getLogger("lifecycle")


def has_check(svc: Service) -> bool:
    return type(svc).check is not Service.check


def has_recover(svc: Service) -> bool:
    return callable(getattr(type(svc), "recover", None))


class Monitor:
    """The health loop of one service; runs in the runtime's monitor host."""

    def __init__(self, rt: ServiceRuntime) -> None:
        self.rt = rt
        self.healthy: bool | None = None
        self.reason = ""
        self.checked_at: float | None = None
        self.in_incident = False
        self.failures = 0
        self.checks = 0
        self.ignored = 0
        self.recoveries = 0

    def view(self) -> dict[str, Any]:
        return {"healthy": self.healthy, "reason": self.reason, "incident": self.in_incident,
                "consecutive_failures": self.failures, "recoveries": self.recoveries}

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
            self.checks += 1
            self.healthy, self.reason, self.checked_at = healthy, reason, now()
            if now() < grace_until:
                self.ignored += 1  # a new resource is not judged before it could initialise
                continue
            if healthy:
                self.failures = 0
                if self.in_incident:
                    self.in_incident = False
                    core.emit(HealthRestored(rt.name, recoveries=self.recoveries))
                continue
            self.failures += 1
            if not self.in_incident:
                self.in_incident = True
                core.emit(HealthAlert(rt.name, reason=reason, failures=self.failures))
            if self.failures < svc.failure_threshold:
                continue
            if not rt.budget.try_take(now()):
                policy = svc.restart
                why = f"more than {policy.max_restarts} recoveries/restarts in {policy.window:g}s"
                rt.escalate("health", RuntimeError(f"unhealthy: {reason}"), why)
                return
            if not await self.recover(reason):
                return
            self.failures = 0
            grace_until = now() + svc.grace_period
            if not await rt.monitor_sleep(svc.cooldown):
                return

    async def recover(self, reason: str) -> bool:
        """``recover()`` if the service defines it, else a full restart; False to stop checking."""
        rt = self.rt
        svc = rt.active
        self.recoveries += 1
        method = "recover" if has_recover(svc) else "restart"
        rt.core.emit(ServiceRecovering(rt.name, attempt=self.recoveries, method=method, reason=reason))
        began = now()
        if method == "recover":
            res = await rt.core.jobs.run(svc.recover, deadline=svc.start_timeout,  # type: ignore[attr-defined]
                                         context=rt.context, label=f"{rt.name}.recover")
            outcome, error = res.outcome, rt.core.describe(res.error)
            if outcome != OK and res.error is not None:
                rt.core.record_failure(rt.name, "recover", res.error, "recovery failed")
        else:
            outcome, error = await rt.restart()
        rt.core.report.restarts.append(RestartRecord(
            rt.name, "health", self.recoveries, 0.0, f"{method}: {reason}", outcome, error,
            began - rt.core.origin))
        log.warning("service %r %s #%d after failed health checks (%s): %s", rt.name, method,
                    self.recoveries, reason, outcome)
        return outcome == OK or method == "recover"


def _verdict(outcome: str, value: object, error: str | None, svc: Service) -> tuple[bool, str]:
    if outcome != OK:
        return False, error or f"check() {outcome} (deadline {svc.check_timeout:g}s)"
    if isinstance(value, Health):
        return value.ok, value.reason
    return bool(value), "" if value else "check() returned False"
