"""``Fallback(name, *candidates)``: the first candidate that starts becomes the service."""

from __future__ import annotations

from typing import Any

from .errors import ConfigError
from .service import Service
from .stage import Stage


class Fallback(Service):
    """Tries each candidate in order, each under its own ``start_timeout``.

    The first that starts is the service from then on: ``sup[name]`` and
    ``dependency(name)`` return it, its ``run()``, loops and stop stages are the ones used.
    Every attempt is in the report. All candidates failing is a start failure (or
    ``FAILED`` when ``optional``).
    """

    _is_chain = True

    def __init__(self, name: str, *candidates: Service, optional: bool = False,
                 depends_on: tuple[str, ...] = ()) -> None:
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
        deps = list(depends_on)
        for cand in candidates:
            deps += [d for d in cand.depends_on if d not in deps]
        super().__init__(name=name, depends_on=tuple(deps), optional=optional,
                         start_timeout=sum(c.start_timeout for c in candidates))
        self.candidates: tuple[Service, ...] = tuple(candidates)
        for cand in candidates:
            cand.depends_on = self.depends_on  # a candidate may use any of the chain's deps

    def stages(self) -> tuple[Stage, ...]:
        """For validation: the longest close among the candidates."""
        return max((c.stages() for c in self.candidates),
                   key=lambda stages: sum(s.timeout for s in stages))

    def secrets(self) -> list[str]:
        return [s for c in self.candidates for s in c.secrets()]

    def report_details(self) -> dict[str, Any]:
        return {}
