"""Validation of a set of services and the orders they start and stop in."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ._declarations import validate_service
from .errors import ConfigError
from .service import Service
from .stage import Stage, check_timeout, shared_stage


def validate(services: Sequence[Service], shutdown_timeout: float,
             drain_delay: float) -> dict[str, Service]:
    """Check everything that can be checked before anything starts; name the offender."""
    check_timeout(shutdown_timeout, "Supervisor shutdown_timeout")
    if isinstance(drain_delay, bool) or not isinstance(drain_delay, (int, float)) \
            or not math.isfinite(drain_delay) or drain_delay < 0:
        raise ConfigError(f"Supervisor drain_delay must be a finite number >= 0, got {drain_delay!r}")
    if drain_delay >= shutdown_timeout:
        raise ConfigError(f"Supervisor drain_delay={drain_delay:g} s leaves nothing of "
                          f"shutdown_timeout={shutdown_timeout:g} s for stopping services")
    by_name: dict[str, Service] = {}
    seen: dict[int, str] = {}  # id(instance) -> where it was listed first
    for index, service in enumerate(services):
        if not isinstance(service, Service):
            raise ConfigError(f"services[{index}] is {service!r}, not a Service instance")
        validate_service(service)
        for member, where in _members(service, index):
            if id(member) in seen:
                raise ConfigError(f"{member!r} is listed twice ({seen[id(member)]} and {where}): "
                                  "one instance can be only one service")
            seen[id(member)] = where
        if service.name in by_name:
            raise ConfigError(f"two services are named {service.name!r}: names must be unique "
                              f"({by_name[service.name]!r} and {service!r})")
        by_name[service.name] = service
    for service in services:
        for dep in service.depends_on:
            if dep not in by_name:
                raise ConfigError(f"service {service.name!r} depends on {dep!r}, which is not in "
                                  f"this supervisor (known: {', '.join(sorted(by_name))})")
    fitted = {id(m): (m, fit_stages(m, shutdown_timeout, service.name))
              for service in services for m, _ in _members(service, 0)}
    cycle = find_cycle(by_name)
    if cycle:
        error = ConfigError("dependency cycle: " + " -> ".join(cycle))
        error.cycle = cycle
        raise error
    for member, stages in fitted.values():  # only once everything is known to be valid
        member._fitted_stages = stages
    return by_name


def _members(service: Service, index: int) -> list[tuple[Service, str]]:
    """The instances a listed service consists of: itself, or a Fallback and its candidates."""
    where = f"services[{index}]"
    return [(service, where)] + [(m, f"a candidate of Fallback {service.name!r}")
                                 for m in service.members() if m is not service]


def fit_stages(service: Service, budget: float, listed_as: str | None = None) -> tuple[Stage, ...] | None:
    """The stages ``service`` gets within ``budget`` seconds (None for a Fallback).

    The inherited no-op ``stop()`` reserves nothing (unless ``stop_timeout`` was set: then
    it is the time the service's tasks get). Explicit
    deadlines must fit (else ``ConfigError`` naming the service); default ones
    (``Stage(..., default=True)``, and ``Service.stop_timeout`` when not set) shrink in
    proportion to fit what the explicit ones leave.
    """
    if service.members() != (service,):
        return None
    declared = service._declared_stages()
    work = [s for s in declared if service.does_work(s) or not s.default]
    tasks = float(service.tasks_timeout or 0.0)  # set, it is explicit and counts too
    explicit = sum(s.timeout for s in work if not s.default) + tasks
    defaults = sum(s.timeout for s in work if s.default)
    who = f"service {service.name!r}"
    if listed_as is not None and listed_as != service.name:
        who = f"service {listed_as!r} (candidate {service.name!r})"
    if explicit > budget:
        what = "tasks_timeout and stop stages" if tasks else "stop stages"
        raise ConfigError(f"{who}: {what} add up to {explicit:g} s, more than "
                          f"shutdown_timeout={budget:g} s")
    room = budget - explicit
    if defaults and room <= 0:
        raise ConfigError(f"{who}: its explicit stop stages take the whole shutdown_timeout="
                          f"{budget:g} s, leaving nothing for its default stages")
    scale = min(1.0, room / defaults) if defaults else 1.0
    return tuple(
        shared_stage(s.name, s.timeout * scale, default=True) if s.default and s in work and scale < 1
        else s if s in work or (type(s) is Stage and s.timeout <= budget)  # already what fits
        else shared_stage(s.name, min(s.timeout, budget), default=s.default)
        for s in declared)


def find_cycle(by_name: dict[str, Service]) -> list[str] | None:
    """A dependency cycle as ``[a, b, ..., a]``, or None."""
    WHITE, GREY, BLACK = 0, 1, 2
    color = dict.fromkeys(by_name, WHITE)
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        color[name] = GREY
        path.append(name)
        for dep in by_name[name].depends_on:
            if color[dep] == GREY:
                return [*path[path.index(dep):], dep]
            if color[dep] == WHITE:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        color[name] = BLACK
        return None

    for name in by_name:
        if color[name] == WHITE:
            found = visit(name)
            if found:
                return found
    return None


def levels(by_name: dict[str, Service]) -> list[list[str]]:
    """Start levels: level 0 has no dependencies, level n depends only on levels < n."""
    depth: dict[str, int] = {}

    def level_of(name: str) -> int:
        if name not in depth:
            deps = by_name[name].depends_on
            depth[name] = 1 + max((level_of(d) for d in deps), default=-1)
        return depth[name]

    result: list[list[str]] = []
    for name in by_name:
        lvl = level_of(name)
        while len(result) <= lvl:
            result.append([])
        result[lvl].append(name)
    return result


def dependents(by_name: dict[str, Service]) -> dict[str, list[str]]:
    """For each service, the services that depend on it (which must stop before it)."""
    result: dict[str, list[str]] = {name: [] for name in by_name}
    for name, service in by_name.items():
        for dep in service.depends_on:
            result[dep].append(name)
    return result
