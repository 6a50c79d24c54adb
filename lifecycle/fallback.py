"""``Fallback(name, *candidates)``: the first candidate that starts becomes the service.

Running on a lesser candidate is *degraded*, and says so: in ``Supervisor.health()``, a
warning at start, the report, and (with ``degraded_ready=False``) readiness. With
``recheck`` the preferred candidates are probed in the background; when one answers, an
event is raised and, with ``on_recovered="restart"``, the app shuts down gracefully with
exit code 75 so that systemd or Kubernetes start it afresh on the preferred candidate.
Databases are never switched under running code.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio

from .errors import ConfigError
from .events import FallbackRecovered
from .redact import describe_error
from .service import Service
from .stage import Stage, check_timeout

if TYPE_CHECKING:
    from ._roles import SupervisorView

log = logging.getLogger("lifecycle")

ON_RECOVERED = (None, "alert", "restart")


class Fallback(Service):
    """Tries each candidate in order, each under its own ``start_timeout``.

    The first that starts is the service from then on: ``sup[name]`` and
    ``dependency(name)`` return it, its ``run()``, loops and stop stages are the ones used.
    Every attempt is in the report. All candidates failing is a start failure (or
    ``FAILED`` when ``optional``).

    - ``degraded_ready``: whether a Fallback running on a lesser candidate counts as ready
      (``False`` keeps a degraded instance out of a load balancer).
    - ``recheck``: every that many seconds while degraded, probe each preferred candidate
      (its ``start()`` then its stop stages, each under its own deadline), never touching
      the running one.
    - ``on_recovered``: ``"alert"`` (the default when ``recheck`` is set) raises a
      :class:`~lifecycle.events.FallbackRecovered` event; ``"restart"`` also requests a
      graceful shutdown whose exit code is 75.
    """

    def __init__(self, name: str, *candidates: Service, optional: bool = False,
                 depends_on: tuple[str, ...] | str = (), degraded_ready: bool = True,
                 recheck: float | None = None, on_recovered: str | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"Fallback needs a name as its first argument, got {name!r}")
        if not candidates:
            raise ConfigError(f"Fallback {name!r} has no candidates")
        seen: set[str] = set()
        for cand in candidates:
            if not isinstance(cand, Service) or isinstance(cand, Fallback):
                raise ConfigError(f"Fallback {name!r}: candidate {cand!r} must be a Service "
                                  "(and not another Fallback)")
            if cand.name in seen:
                raise ConfigError(f"Fallback {name!r}: two candidates are named {cand.name!r}")
            seen.add(cand.name)
        if not isinstance(degraded_ready, bool):
            raise ConfigError(f"Fallback {name!r}: degraded_ready must be True or False, "
                              f"got {degraded_ready!r}")
        if recheck is not None:
            recheck = check_timeout(recheck, f"Fallback {name!r}: recheck")
        if on_recovered not in ON_RECOVERED:
            raise ConfigError(f"Fallback {name!r}: on_recovered must be one of {ON_RECOVERED}, "
                              f"got {on_recovered!r}")
        if on_recovered is not None and recheck is None:
            raise ConfigError(f"Fallback {name!r}: on_recovered={on_recovered!r} needs "
                              "recheck=<seconds> (nothing would ever notice the recovery)")
        deps = [depends_on] if isinstance(depends_on, str) else list(depends_on)
        for cand in candidates:
            deps += [d for d in cand.depends_on if d not in deps]
        super().__init__(name=name, depends_on=tuple(deps), optional=optional,
                         start_timeout=sum(c.start_timeout for c in candidates))
        self.candidates: tuple[Service, ...] = tuple(candidates)
        self.degraded_ready = degraded_ready
        self.recheck = recheck
        self.on_recovered = on_recovered or ("alert" if recheck is not None else None)
        self.recovered: str | None = None  # the preferred candidate a recheck found answering
        for cand in candidates:
            cand.depends_on = self.depends_on  # a candidate may use any of the chain's deps

    def members(self) -> tuple[Service, ...]:
        """Its candidates, in order: they carry the stages, loops and run() that get used."""
        return self.candidates

    def stages(self) -> tuple[Stage, ...]:
        """For validation: the longest close among the candidates."""
        return max((c.stages() for c in self.candidates),
                   key=lambda stages: sum(s.timeout for s in stages))

    def secrets(self) -> list[str]:
        return [s for c in self.candidates for s in c.secrets()]

    def report_details(self) -> dict[str, Any]:
        return {}

    # ----- degraded ---------------------------------------------------------------------
    def is_degraded(self, active: Service) -> bool:
        """``active`` (the winner) is not the first candidate."""
        return active in self.candidates and active is not self.candidates[0]

    def view(self, active: Service) -> dict[str, Any]:
        """This chain's part of ``Supervisor.health()``."""
        if not self.is_degraded(active):
            return {"degraded": False}
        return {"degraded": True, "preferred": self.candidates[0].name,
                "degraded_ready": self.degraded_ready,
                **({"recovered": self.recovered} if self.recovered else {})}

    def background(self, active: Service) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
        """Work to run next to the winner: the recheck loop, when degraded and asked for."""
        if self.recheck is None or not self.is_degraded(active):
            return []
        return [("recheck", lambda: self._recheck(active))]

    async def _recheck(self, active: Service) -> None:
        """Probe the preferred candidates every ``recheck`` s until one answers."""
        assert self.recheck is not None
        preferred = self.candidates[:self.candidates.index(active)]
        while await active.sleep(self.recheck):
            for cand in preferred:
                error = await self._probe_until_shutdown(active, cand)
                if active.shutting_down:
                    return
                if error is not None:
                    log.debug("fallback %r: %s still unavailable: %s", self.name, cand.name, error)
                    continue
                self._recovered(active.supervisor, cand)
                return

    @staticmethod
    async def _probe_until_shutdown(active: Service, cand: Service) -> str | None:
        """:func:`probe`, cut short when shutdown begins: a probe into a dead proxy must
        not hold up the close for its whole start deadline."""
        outcome: list[str | None] = []
        async with anyio.create_task_group() as tg:
            async def cancel_on_shutdown() -> None:
                await active.wait_shutdown()
                tg.cancel_scope.cancel()

            tg.start_soon(cancel_on_shutdown)
            outcome.append(await probe(cand))
            tg.cancel_scope.cancel()
        return outcome[0] if outcome else "shutdown began"

    def _recovered(self, sup: SupervisorView[Service], cand: Service) -> None:
        self.recovered = cand.name
        event = FallbackRecovered(self.name, candidate=cand.name, action=str(self.on_recovered))
        sup.emit(event)  # the report's restart_requested is its restart_reason
        if event.restart_reason:
            sup.request_shutdown(f"{event.restart_reason}; restarting onto it")


async def probe(cand: Service) -> str | None:
    """Start ``cand`` under its ``start_timeout`` and close it again at once (each stop
    stage under its deadline, even when cancelled); None when it started, else why not."""
    started = False
    try:
        with anyio.fail_after(cand.start_timeout):
            await cand.start()
        started = True
        return None
    except TimeoutError:
        return f"no answer within its start_timeout of {cand.start_timeout:g} s"
    except Exception as exc:
        return describe_error(exc, cand.secrets())
    finally:
        if started:
            for stage in cand.stages():
                with anyio.move_on_after(stage.timeout, shield=True):
                    try:
                        await getattr(cand, stage.name)()
                    except Exception as exc:
                        log.warning("probe of %r: %s() failed: %s", cand.name, stage.name,
                                    describe_error(exc, cand.secrets()))
