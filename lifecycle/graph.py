"""Validation of a set of services and the orders they start and stop in."""

from __future__ import annotations

import math
from collections.abc import Sequence

from .errors import ConfigError
from .service import Service, validate_service
from .stage import check_timeout


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
    for index, service in enumerate(services):
        if not isinstance(service, Service):
            raise ConfigError(f"services[{index}] is {service!r}, not a Service instance")
        validate_service(service)
        if service.name in by_name:
            raise ConfigError(f"two services are named {service.name!r}: names must be unique "
                              f"({by_name[service.name]!r} and {service!r})")
        by_name[service.name] = service
    for service in services:
        for dep in service.depends_on:
            if dep not in by_name:
                raise ConfigError(f"service {service.name!r} depends on {dep!r}, which is not in "
                                  f"this supervisor (known: {', '.join(sorted(by_name))})")
        total = sum(stage.timeout for stage in service.stages())
        if total > shutdown_timeout:
            raise ConfigError(f"service {service.name!r}: stop stages add up to {total:g} s, more "
                              f"than shutdown_timeout={shutdown_timeout:g} s")
    cycle = find_cycle(by_name)
    if cycle:
        error = ConfigError("dependency cycle: " + " -> ".join(cycle))
        error.cycle = cycle
        raise error
    return by_name


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
