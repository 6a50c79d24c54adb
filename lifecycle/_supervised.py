"""A service's ``run()`` and ``@every``/``@cron`` loops under its restart policy.

Each body runs until it ends; then the policy decides: restart after the backoff, escalate
(the window or the streak of restarts that did not help is full), or let it end. A failure is
recorded with its traceback, never lost; ``SystemExit``/``KeyboardInterrupt`` end the service.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio

from ._backend import now
from ._bounded import unwrap
from .events import ServiceRestarting
from .every import LoopSpec, every
from .report import RestartRecord

if TYPE_CHECKING:
    from ._core import Runtime
    from .service import Service

#: Exceptions that ask the process to exit. Raised inside a service's tasks they end that
#: service like a failure (never restarted); the supervisor still closes and reports.
EXIT_REQUESTS = (SystemExit, KeyboardInterrupt)


async def run_loop(svc: Service, attr: str, spec: LoopSpec, done: list[int]) -> None:
    body = getattr(svc, attr)
    async for _ in spec.ticks(svc):
        if await body() is every.STOP:
            return
        done[0] += 1

async def supervised(rt: Runtime, where: str, body: Callable[[], Awaitable[Any]],
                     done: list[int] | None = None) -> None:
    """Run ``body``; on its end apply the restart policy (backoff, window, streak, escalation)."""
    svc = rt.active
    policy = svc.restart
    attempt = 0
    while True:
        failed = False
        began = now()
        if done is not None:
            done[0] = 0
        try:
            await body()
        except anyio.get_cancelled_exc_class():
            raise
        except BaseException as exc:  # SystemExit too: it ends the service, not the loop
            failed = True
            error: BaseException = unwrap(exc)
        if failed and isinstance(error, EXIT_REQUESTS) and not svc.shutting_down:
            rt.fail(where, error, f"raised {type(error).__name__}: not restarted")
            return
        if svc.shutting_down:
            if failed:
                rt.core.record_failure(rt.name, where, error, "shutting down")
            return
        if not policy.wants_restart(failed):
            if failed:
                rt.fail(where, error, "no restart (policy)")
            elif where == "run" and not svc.optional:
                rt.core.request_shutdown(f"run() of {rt.name!r} returned")
            return
        # a loop that completed no body since its restart has not run, however long it waited
        ran = now() - began if done is None or done[0] else 0.0
        streak, why = rt.budget.take_restart(where, now(), ran)
        if why is not None:
            rt.escalate(where, error if failed else RuntimeError(f"{where} kept ending"), why)
            return
        delay = policy.delay(streak - 1)  # the backoff starts again after a stable run
        attempt += 1
        reason = rt.core.describe(error) if failed else "ended"
        cascade = failed and where == "run" and rt.core.cascades.cascades(rt)
        if failed:
            rt.core.record_failure(rt.name, where, error, f"restart #{attempt} in {delay:.2f}s"
                                   + (" with the services that restart with it" if cascade else ""))
        rt.core.emit(ServiceRestarting.of(RestartRecord(rt.name, where, attempt, delay, reason or "",
                                                        began=now() - rt.core.origin)))
        if cascade:  # the restart strategy stops and starts it with its group
            await rt.core.cascades.restart_soon(rt, where, delay)
            return
        if not await svc.sleep(delay):
            return
