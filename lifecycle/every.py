"""``@every(interval)``: a background loop declared on a service method.

``@every`` and ``@cron`` (lifecycle/cron.py) both mark a method with a :class:`LoopSpec`;
the supervisor runs every marked method on the same shutdown-aware loop: the spec only says
when the next tick is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar

from .stage import check_timeout

_ATTR: Final = "__lifecycle_every__"

F = TypeVar("F", bound=Callable[..., Awaitable[object]])


class LoopMarker(Protocol):
    """What ``every(...)`` and ``cron(...)`` return: it marks an async method and keeps its
    exact type (a protocol, so a user's ``mypy --strict --disallow-any-expr`` sees no
    ``Any`` in it)."""

    def __call__(self, fn: F, /) -> F: ...


class _Stop:
    """Returned by an ``@every`` body to end its own loop (the service keeps running)."""

    _instance: _Stop | None = None

    def __new__(cls) -> _Stop:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "every.STOP"


class Ticking(Protocol):
    """What a loop's schedule uses of its service (a ``Service``, which imports this
    module): its shutdown-aware clock."""

    def ticks(self, interval: float, *, immediate: bool = False) -> AsyncIterator[int]: ...
    async def sleep(self, seconds: float) -> bool: ...


class LoopSpec:
    """When a marked method runs: :meth:`ticks` yields once per run until shutdown begins."""

    def ticks(self, service: Ticking) -> AsyncIterator[int]:
        raise NotImplementedError

    def describe(self) -> str:
        """How the schedule reads in plans and graphs (``every 60s``, ``cron */5 * * * *``)."""
        raise NotImplementedError


@dataclass(frozen=True)
class EverySpec(LoopSpec):
    interval: float  # seconds between ticks (fixed rate), > 0
    immediate: bool  # the first tick at once instead of after one interval

    def ticks(self, service: Ticking) -> AsyncIterator[int]:
        return service.ticks(self.interval, immediate=self.immediate)

    def describe(self) -> str:
        return f"every {self.interval:g}s"


class _Every:
    """Decorator factory; ``every.STOP`` is the sentinel a body returns to stop its loop.

    The body runs once per ``interval`` seconds (fixed rate; ticks missed while the body ran
    are skipped, never bunched). The first run is one interval after start, or at once with
    ``immediate=True``. The wait is on the shutdown event, so a loop ends within one body
    run of shutdown starting, never one interval.
    """

    STOP: Final = _Stop()

    def __call__(self, interval: float, *, immediate: bool = False) -> LoopMarker:
        return mark_loop(EverySpec(check_timeout(interval, "@every interval"), bool(immediate)))


every: Final = _Every()


def mark_loop(spec: LoopSpec) -> LoopMarker:
    """The decorator that marks a method with ``spec`` (shared by ``@every`` and ``@cron``)."""

    def mark(fn: F) -> F:
        setattr(fn, _ATTR, spec)
        return fn

    return mark


def loop_spec(obj: object) -> LoopSpec | None:
    """The ``@every``/``@cron`` spec of a function, or None."""
    spec = getattr(obj, _ATTR, None)
    return spec if isinstance(spec, LoopSpec) else None
