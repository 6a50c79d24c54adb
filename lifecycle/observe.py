"""The observers a supervisor attaches to every run unless told otherwise.

An observer is either a plain ``Supervisor.subscribe`` listener or an object with
``attach(supervisor) -> detach``: attached when the run begins (on the event loop, before
anything starts) and detached once the report is complete. The defaults cost under 1 %
of a start and stop (see ``docs/performance.md``):

- :class:`lifecycle.metrics.LifecycleMetrics`: counters for ``/metrics`` (plain integers;
  ``prometheus_client`` is imported only when something is scraped);
- :class:`lifecycle.blocking.BlockingDetector`, unless ``blocking_threshold=None``;
- :class:`lifecycle.otel.Tracing`, only when the process imported OpenTelemetry's API
  (a tracer provider can only be configured after that import).
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import anyio.abc

from .errors import ConfigError

if TYPE_CHECKING:
    from ._roles import SupervisorView
    from .service import Service

log = logging.getLogger("lifecycle")

#: What ``observers=`` accepts: a listener, or an object whose ``attach(supervisor)``
#: subscribes itself and returns a function that detaches it (or None).
Observer = Any


def default_observers(sup: SupervisorView[Service]) -> list[Any]:
    from .metrics import LifecycleMetrics

    observers: list[Any] = [LifecycleMetrics()]
    if sup.blocking_threshold is not None:
        from .blocking import BlockingDetector

        observers.append(BlockingDetector(sup.blocking_threshold))
    if "opentelemetry.trace" in sys.modules:
        from .otel import Tracing

        observers.append(Tracing())
    return observers


def serve_observers(stack_dump_signal: int | None) -> list[Observer]:
    """What ``serve()`` adds: the systemd notifier under systemd (``NOTIFY_SOCKET``), and
    the stack dump on its signal when it handles signals (None: not)."""
    from .systemd import Notifier

    notifier = Notifier.from_env()
    observers: list[Observer] = [] if notifier is None else [notifier]
    if stack_dump_signal is not None:
        from .stackdump import StackDump

        observers.append(StackDump(stack_dump_signal))
    return observers


async def run_alongside(sup: SupervisorView[Service], observers: Iterable[Observer],
                        task_group: anyio.abc.TaskGroup) -> None:
    """Start the ``run_alongside(sup, task_status=...)`` of each observer that has one (the
    systemd notifier's watchdog pings): ``serve()`` runs them until the close has ended."""
    for observer in observers:
        run = getattr(observer, "run_alongside", None)
        if run is not None:
            await task_group.start(run, sup)


def attach_observers(sup: SupervisorView[Service], observers: Iterable[Observer]) -> list[Callable[[], Any]]:
    """Attach the defaults, then ``observers``; the detach functions, in attach order. An
    observer of the same class as a default replaces it (``BlockingDetector(0.2)``,
    ``Tracing(tracer_provider=...)``)."""
    observers = list(observers)
    given = {type(o) for o in observers}
    defaults = [d for d in default_observers(sup) if type(d) not in given]
    detach: list[Callable[[], Any]] = []
    for observer in [*defaults, *observers]:
        attach = getattr(observer, "attach", None)
        undo = attach(sup) if attach is not None else sup.subscribe(observer)
        if undo is not None:
            detach.append(undo)
    return detach


def detach_observers(detach: list[Callable[[], Any]]) -> None:
    """Detach in reverse order; a failing one is logged, the others still run."""
    while detach:
        undo = detach.pop()
        try:
            undo()
        except Exception:
            log.exception("detaching lifecycle observer %r failed", undo)


def blocking_threshold_seconds(value: float | None) -> float | None:
    """``Supervisor(blocking_threshold=...)`` checked: positive finite seconds, or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and value > 0):
        raise ConfigError(f"Supervisor(blocking_threshold=...) must be a positive number of "
                          f"seconds or None, not {value!r}")
    return float(value)
