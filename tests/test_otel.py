"""OpenTelemetry spans of the start and the close, checked with the real SDK's in-memory
exporter (no mock): names, parents, outcomes, deadlines and error status."""

from __future__ import annotations

import anyio
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from lifecycle import Fallback, Service, Stage, Supervisor
from lifecycle.otel import Tracing

pytestmark = pytest.mark.anyio


class Refuses(Service):
    async def start(self) -> None:
        raise ConnectionRefusedError("primary refused the connection")


class Hangs(Service):
    stop_stages = (Stage("drain", 0.2), Stage("close", 1.0))

    async def drain(self) -> None:
        await anyio.sleep(30)  # overruns its 0.2 s deadline

    async def close(self) -> None:
        pass


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    found = {s.name: s for s in spans}
    assert len(found) == len(spans), [s.name for s in spans]
    return found


async def test_start_and_close_spans_nest_with_outcomes_deadlines_and_errors() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    db = Fallback("db", Refuses(name="primary"), Service(name="replica"))
    sup = Supervisor([db, Hangs(name="ingest", depends_on=("db",))], shutdown_timeout=5.0,
                     observers=[Tracing(tracer_provider=provider)])
    async with sup:
        pass
    spans = by_name(exporter.get_finished_spans())
    assert set(spans) == {"lifecycle.start", "start db", "try primary", "try replica",
                          "start ingest", "lifecycle.close", "stop db", "stop ingest",
                          "db.stop", "ingest.drain", "ingest.close"}

    def parent(name: str) -> str | None:
        ctx = spans[name].parent
        return next((n for n, s in spans.items() if ctx and s.context.span_id == ctx.span_id),
                    None)

    assert parent("lifecycle.start") is None and parent("lifecycle.close") is None
    assert parent("start db") == parent("start ingest") == "lifecycle.start"
    assert parent("try primary") == parent("try replica") == "start db"
    assert parent("stop db") == parent("stop ingest") == "lifecycle.close"
    assert parent("ingest.drain") == parent("ingest.close") == "stop ingest"
    assert parent("db.stop") == "stop db"
    assert all(s.context.trace_id == spans["lifecycle.start"].context.trace_id
               for n, s in spans.items() if parent(n) in ("lifecycle.start", "start db"))

    failed = spans["try primary"]
    assert failed.attributes is not None
    assert failed.attributes["lifecycle.outcome"] == "error"
    assert "refused" in str(failed.attributes["lifecycle.error"])
    assert failed.status.status_code == StatusCode.ERROR
    assert [e.name for e in failed.events] == ["exception"]
    assert spans["try replica"].status.status_code == StatusCode.UNSET
    assert spans["start db"].attributes == {**spans["start db"].attributes,
                                            "lifecycle.outcome": "ok", "lifecycle.winner": "replica"}

    drain = spans["ingest.drain"]
    assert drain.attributes is not None
    assert drain.attributes["lifecycle.outcome"] == "timeout"
    assert drain.attributes["lifecycle.deadline"] == 0.2
    assert drain.status.status_code == StatusCode.ERROR
    assert spans["ingest.close"].status.status_code == StatusCode.UNSET
    assert spans["stop ingest"].status.status_code == StatusCode.ERROR
    assert spans["lifecycle.close"].status.status_code == StatusCode.ERROR
    assert drain.start_time is not None and drain.end_time is not None
    assert 0.15 < (drain.end_time - drain.start_time) / 1e9 < 2.0
    close = spans["lifecycle.close"]
    assert close.start_time is not None and close.end_time is not None
    assert close.start_time <= drain.start_time and drain.end_time <= close.end_time + 1_000_000


def test_tracing_is_a_default_observer_once_opentelemetry_is_imported() -> None:
    from lifecycle.observe import default_observers

    # this module imported opentelemetry.trace, as any app that configures a provider does
    assert any(isinstance(o, Tracing) for o in default_observers(Supervisor([Service(name="x")])))
