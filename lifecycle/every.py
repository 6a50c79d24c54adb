"""``@every(interval)``: a background loop declared on a service method."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from .stage import check_timeout

_ATTR: Final = "__lifecycle_every__"

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


class _Stop:
    """Returned by an ``@every`` body to end its own loop (the service keeps running)."""

    _instance: _Stop | None = None

    def __new__(cls) -> _Stop:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "every.STOP"


@dataclass(frozen=True)
class EverySpec:
    interval: float
    immediate: bool


class _Every:
    """Decorator factory; ``every.STOP`` is the sentinel a body returns to stop its loop.

    The body runs once per ``interval`` seconds (fixed rate; ticks missed while the body ran
    are skipped, never bunched). The first run is one interval after start, or at once with
    ``immediate=True``. The wait is on the shutdown event, so a loop ends within one body
    run of shutdown starting, never one interval.
    """

    STOP: Final = _Stop()

    def __call__(self, interval: float, *, immediate: bool = False) -> Callable[[F], F]:
        spec = EverySpec(check_timeout(interval, "@every interval"), bool(immediate))

        def mark(fn: F) -> F:
            setattr(fn, _ATTR, spec)
            return fn

        return mark


every: Final = _Every()


def loop_spec(obj: object) -> EverySpec | None:
    """The ``@every`` spec of a function, or None."""
    spec = getattr(obj, _ATTR, None)
    return spec if isinstance(spec, EverySpec) else None
