"""Prometheus metrics for a supervisor: ``lifecycle_*``, built on its events.

:class:`LifecycleMetrics` is an observer every supervisor attaches by default: it counts
events into plain integers (a dictionary lookup per event) and reads the live state
(up, ready, shutting down) when scraped. It is also a ``prometheus_client`` collector, so
``registry.register(metrics.collector(sup))`` serves it from your own registry;
:func:`exposition` renders it (with the process-wide default registry) for a ``/metrics``
route, as ``HealthServer`` does. ``prometheus_client`` (the ``metrics`` extra) is imported
only when something is scraped. The metric names are a contract: see
``docs/observability.md``.

What the report records anyway (each start, the final close's stages) is read from it when
scraped; events count what it does not keep (stages of a restart's stop, restarts, health
incidents, blocked-loop incidents), so a start and close of many services costs the
metrics next to nothing.

A service adds its own metrics by defining ``collect_metrics(self)``, returning
``prometheus_client`` metric families; it is called on every scrape while the service
runs. The InfluxWriter's counters (from its public ``stats``) and a database pool (from its
public ``pool_stats()``) are read the same way, by shape, without importing the adapters.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .events import (
    Event,
    HealthAlert,
    LoopBlocked,
    ServiceRecovering,
    ServiceRestarting,
    ShutdownRequested,
    StageFinished,
)

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import Collector

    from ._roles import SupervisorView
    from .service import Service

__all__ = ["LifecycleMetrics", "collector", "exposition"]

log = logging.getLogger("lifecycle.metrics")

_attached: weakref.WeakKeyDictionary[SupervisorView[Service], LifecycleMetrics] = weakref.WeakKeyDictionary()


class LifecycleMetrics:
    """Counters from one supervisor's events, and a ``prometheus_client`` collector."""

    def __init__(self) -> None:
        self._sup: weakref.ref[SupervisorView[Service]] | None = None  # weak: the registry below is too
        # Only str keys and number values, nested per service: containers the garbage
        # collector does not track, so a thousand services' figures cost it nothing.
        # Stages run while serving (a restart's stop); the final close's are in the report.
        self.stage_seconds: dict[str, dict[str, float]] = {}  # service -> stage -> seconds
        self.stage_outcomes: dict[str, dict[str, int]] = {}  # service -> "stage outcome" -> n
        self.restarts: dict[str, int] = {}
        self.incidents: dict[str, int] = {}
        self.blocked = 0
        self.blocked_seconds = 0.0
        self._on: dict[type[Event], Callable[[Any], None]] = {
            StageFinished: self._stage, ShutdownRequested: self._closing,
            ServiceRestarting: self._restarting, ServiceRecovering: self._recovering,
            HealthAlert: self._alert, LoopBlocked: self._blocked}

    def attach(self, sup: SupervisorView[Service]) -> Callable[[], None]:
        """Count ``sup``'s events from now on; the latest run's counters stay readable."""
        self._sup = weakref.ref(sup)
        _attached[sup] = self
        handlers = self._on.get

        def on_event(event: Event) -> None:  # most events are none of ours: keep a miss cheap
            handler = handlers(event.__class__)
            if handler is not None:
                handler(event)
        return sup.subscribe(on_event)

    @property
    def sup(self) -> SupervisorView[Service] | None:
        """The supervisor whose events are counted (None before ``attach``, or once it is
        gone: this object never keeps a supervisor alive)."""
        return self._sup() if self._sup is not None else None

    def on_event(self, event: Event) -> None:
        """Count one event (what ``attach`` subscribes, for use without a supervisor)."""
        handler = self._on.get(event.__class__)
        if handler is not None:
            handler(event)

    def _closing(self, e: ShutdownRequested) -> None:
        # From here on stages are the final close's, and the report records every one of
        # them: stop counting (a thousand services' close then costs one dict miss each).
        self._on.pop(StageFinished, None)

    def _stage(self, e: StageFinished) -> None:
        service = e.service or ""
        seconds = self.stage_seconds.get(service)
        if seconds is None:
            seconds = self.stage_seconds[service] = {}
            self.stage_outcomes[service] = {}
        seconds[e.stage] = e.elapsed
        _count(self.stage_outcomes[service], f"{e.stage} {e.outcome}")

    def _restarting(self, e: ServiceRestarting) -> None:
        _count(self.restarts, e.service or "")

    def _recovering(self, e: ServiceRecovering) -> None:
        if e.method == "restart":
            _count(self.restarts, e.service or "")

    def _alert(self, e: HealthAlert) -> None:
        _count(self.incidents, e.service or "")

    def _blocked(self, e: LoopBlocked) -> None:
        self.blocked += 1
        self.blocked_seconds += e.seconds

    # ----- the prometheus_client collector protocol -------------------------------------
    def describe(self) -> list[Metric]:
        return []  # names vary with the services; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        from . import _prometheus

        yield from _prometheus.families(self)


def _count(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


def collector(sup: SupervisorView[Service]) -> LifecycleMetrics:
    """The metrics observer attached to ``sup`` (one is attached by default when it runs);
    a new one, attached now, if there is none."""
    found = _attached.get(sup)
    if found is None:
        found = LifecycleMetrics()
        found.attach(sup)
    return found


def exposition(sup: SupervisorView[Service], registry: Collector | None = None,
               accept: str | None = None) -> tuple[bytes, str]:
    """The body and content type of a ``/metrics`` answer: ``sup``'s ``lifecycle_*``
    metrics, then ``registry`` (default: ``prometheus_client.REGISTRY``: the process and
    anything registered there). ``accept`` is the request's Accept header (OpenMetrics
    when the scraper asks for it)."""
    from . import _prometheus

    return _prometheus.render(collector(sup), registry, accept)
