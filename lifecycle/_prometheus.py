"""``LifecycleMetrics`` as ``prometheus_client`` metric families (imported when scraped)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, exposition
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .service import ServiceState

if TYPE_CHECKING:
    from .metrics import LifecycleMetrics
    from .report import LifecycleReport

log = logging.getLogger("lifecycle.metrics")

INFLUX_OUTCOMES = ("accepted", "written", "spooled", "replayed", "dead_lettered", "dropped")
_BREAKER = {"closed": 0, "half-open": 1, "half_open": 1, "open": 2}
_STATES = [s.value for s in ServiceState]


Samples = Iterable[tuple[list[str], float]]


def _family(kind: type[GaugeMetricFamily] | type[CounterMetricFamily], name: str, doc: str,
            labels: list[str], samples: Samples) -> Metric:
    family = kind(name, doc, labels=labels)
    for values, value in samples:
        family.add_metric(values, value)
    return family


def _gauge(name: str, doc: str, labels: list[str], samples: Samples = ()) -> Metric:
    return _family(GaugeMetricFamily, name, doc, labels, samples)


def _counter(name: str, doc: str, labels: list[str], samples: Samples = ()) -> Metric:
    return _family(CounterMetricFamily, name, doc, labels, samples)


def families(m: LifecycleMetrics) -> Iterator[Metric]:
    sup = m.sup
    health: dict[str, Any] = sup.health() if sup is not None else {"services": {}}
    services: dict[str, dict[str, Any]] = health["services"]
    running = health.get("state") in ("running", "stopping")
    yield _gauge("lifecycle_service_up", "1 while the service runs, 0 otherwise", ["service"],
                 (([n], float(running and s["state"] == "running")) for n, s in services.items()))
    yield _gauge("lifecycle_service_state", "1 for the state the service is in", ["service", "state"],
                 (([n, st], float(s["state"] == st)) for n, s in services.items() for st in _STATES))
    report = sup.report if sup is not None else None
    yield _gauge("lifecycle_service_start_seconds", "How long the start took", ["service"],
                 (([n], r.elapsed) for n, r in (report.startup.items() if report else ())
                  if r.outcome == "ok"))
    seconds, outcomes = _stages(m, report)
    yield _gauge("lifecycle_stage_seconds", "How long the last run of a stop stage took",
                 ["service", "stage"], ((list(k), v) for k, v in seconds.items()))
    yield _counter("lifecycle_stage_outcome_total", "Stop stages run, by outcome",
                   ["service", "stage", "outcome"], ((list(k), v) for k, v in outcomes.items()))
    yield _counter("lifecycle_service_restarts_total",
                   "Restarts of a run()/loop and health recoveries by restart", ["service"],
                   (([n], float(m.restarts.get(n, 0))) for n in services))
    yield _counter("lifecycle_health_incidents_total", "Health incidents (one alert each)",
                   ["service"], (([n], float(m.incidents.get(n, 0))) for n in services))
    yield _counter("lifecycle_health_check_failures_total", "Health checks that failed",
                   ["service"], (([n], float(s["failed_checks"])) for n, s in services.items()
                                 if "failed_checks" in s))
    yield _gauge("lifecycle_ready", "1 while the app is ready for traffic", [],
                 [([], float(bool(health.get("ready"))))])
    yield _gauge("lifecycle_shutting_down", "1 once shutdown was requested", [],
                 [([], float(bool(health.get("shutting_down"))))])
    yield _counter("lifecycle_loop_blocked_total", "Times the event loop was blocked", [],
                   [([], float(m.blocked))])
    yield _counter("lifecycle_loop_blocked_seconds_total", "Seconds the event loop was blocked",
                   [], [([], m.blocked_seconds)])
    if sup is not None:
        yield from _service_families(sup)


def _stages(m: LifecycleMetrics, report: LifecycleReport | None) -> tuple[
        dict[tuple[str, str], float], dict[tuple[str, str, str], float]]:
    """Stage durations and outcome counts: those counted from events (restarts' stops),
    then the final close's from the report."""
    seconds = {(service, stage): v for service, stages in m.stage_seconds.items()
               for stage, v in stages.items()}
    outcomes: dict[tuple[str, str, str], float] = {}
    for service, counts in m.stage_outcomes.items():
        for pair, n in counts.items():
            stage, outcome = pair.split(" ", 1)
            outcomes[(service, stage, outcome)] = float(n)
    for rec in report.stages() if report is not None else ():
        seconds[(rec.service, rec.stage)] = rec.elapsed
        found = (rec.service, rec.stage, rec.outcome)
        outcomes[found] = outcomes.get(found, 0.0) + 1
    return seconds, outcomes


def _running_services(sup: Any) -> Iterator[tuple[str, Any]]:
    for svc in sup.services:
        try:
            yield svc.name, sup.resolve(svc.name)
        except LookupError:
            continue


def _service_families(sup: Any) -> Iterator[Metric]:
    """The InfluxWriters', the pools' and each service's own ``collect_metrics()``."""
    running = list(_running_services(sup))
    writers = [(n, s) for n, s in running if _is_writer(s)]
    if writers:
        yield from _influx_families(writers)
    pools = [(n, s.pool_stats()) for n, s in running if callable(getattr(s, "pool_stats", None))]
    for key, doc in (("size", "Connections open in the pool"),
                     ("in_use", "Connections checked out"),
                     ("waiting", "Tasks waiting for a connection"),
                     ("max_size", "The most connections the pool may open")):
        found = [([n], float(stats[key])) for n, stats in pools if key in stats]
        if found:
            yield _gauge(f"lifecycle_db_pool_{key}", doc, ["service"], found)
    for name, svc in running:
        own = getattr(svc, "collect_metrics", None)
        if callable(own):
            try:
                yield from own()
            except Exception:
                log.exception("collect_metrics() of service %r failed", name)


def _is_writer(svc: Any) -> bool:
    stats = getattr(svc, "stats", None)
    return all(hasattr(stats, f) for f in (*INFLUX_OUTCOMES, "retried", "spool_backlog"))


def _influx_families(writers: list[tuple[str, Any]]) -> Iterator[Metric]:
    stats = [(n, w.stats) for n, w in writers]
    yield _counter("lifecycle_influx_points_total", "InfluxWriter points, by what became of them",
                   ["writer", "outcome"],
                   (([n, o], float(getattr(s, o))) for n, s in stats for o in INFLUX_OUTCOMES))
    yield _counter("lifecycle_influx_retries_total", "InfluxWriter requests retried", ["writer"],
                   (([n], float(s.retried)) for n, s in stats))
    yield _gauge("lifecycle_influx_buffered_points", "Points in memory", ["writer"],
                 (([n], float(s.buffered)) for n, s in stats))
    yield _gauge("lifecycle_influx_spool_backlog_points", "Points in the spool awaiting replay",
                 ["writer"], (([n], float(s.spool_backlog)) for n, s in stats))
    details = [(n, w.report_details()) for n, w in writers]
    yield _gauge("lifecycle_influx_breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open",
                 ["writer"], (([n], float(_BREAKER.get(str(d.get("breaker")), -1)))
                              for n, d in details if "breaker" in d))
    spools = [(n, getattr(w, "spool_store", None)) for n, w in writers]
    yield _gauge("lifecycle_influx_spool_bytes", "Bytes in the spool (points and dead letters)",
                 ["writer"], (([n], float(st.bytes + st.dead_bytes))
                              for n, st in ((n, sp.stats()) for n, sp in spools if sp is not None)))


class _Both:
    """The lifecycle collector then a registry, as one thing ``generate_latest`` reads."""

    def __init__(self, first: Collector, then: Collector | None) -> None:
        self.first, self.then = first, then

    def collect(self) -> Iterator[Metric]:
        yield from self.first.collect()
        if self.then is not None:
            yield from self.then.collect()


def render(m: LifecycleMetrics, registry: Collector | None, accept: str | None) -> tuple[bytes, str]:
    both: Any = _Both(m, REGISTRY if registry is None else registry)
    encoder, content_type = exposition.choose_encoder(accept or "")
    return encoder(both), content_type
