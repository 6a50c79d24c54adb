"""Logging: text by default, JSON lines on request, one line per lifecycle event."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from lifecycle import Service, Stage, Supervisor
from lifecycle.events import HealthAlert, ServiceRecovering, ServiceStarted, StageFinished
from lifecycle.logs import JsonFormatter, configure, describe_event, log_events


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_json_formatter_one_object_per_line() -> None:
    record = logging.LogRecord("app.x", logging.WARNING, __file__, 1, "hello %s\nworld", ("you",),
                               None)
    record.request_id = 7
    record.obj = object()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "WARNING" and entry["logger"] == "app.x"
    assert entry["message"] == "hello you\nworld"
    assert entry["request_id"] == 7 and entry["obj"].startswith("<object object")
    assert entry["time"].endswith("Z") and "T" in entry["time"]
    assert "args" not in entry and "msg" not in entry


def test_json_formatter_includes_the_exception() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    entry = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in entry["exc"] and "Traceback" in entry["exc"]


def test_configure_replaces_its_own_handler(restore_root: None) -> None:
    first, second = io.StringIO(), io.StringIO()
    configure("text", stream=first)
    configure("json", level="DEBUG", stream=second)
    logging.getLogger("t").debug("only %s", "json")
    assert first.getvalue() == ""
    assert json_lines(second.getvalue())[0]["message"] == "only json"
    with pytest.raises(ValueError, match="'yaml'"):
        configure("yaml")


def test_text_lines_are_readable() -> None:
    level, text = describe_event(ServiceStarted("db", elapsed=0.25, winner="sqlite").to_dict())
    assert level == logging.INFO and text == "db: started in 0.250s (fallback winner: sqlite)"
    level, text = describe_event(StageFinished("db", stage="flush", outcome="timeout", elapsed=5.0,
                                               deadline=5.0, error="flush() did not finish").to_dict())
    assert level == logging.WARNING
    assert text == "db.flush: timeout in 5.000s (deadline 5s): flush() did not finish"
    level, text = describe_event(HealthAlert("db", reason="SELECT 1 timed out", failures=3).to_dict())
    assert level == logging.WARNING and text == "db: unhealthy after 3 failed checks: SELECT 1 timed out"
    level, text = describe_event(ServiceRecovering("db", attempt=1, method="recover",
                                                   reason="unhealthy").to_dict())
    assert text == "db: recovering by recover (attempt 1): unhealthy"


class Db(Service):
    pass


class Api(Service):
    depends_on = ("db",)
    stop_stages = (Stage("drain", 1.0), Stage("close", 1.0))

    async def drain(self) -> None:
        pass

    async def close(self) -> None:
        raise RuntimeError("socket already closed")


@pytest.mark.anyio
async def test_one_json_line_per_lifecycle_event(restore_root: None) -> None:
    out = io.StringIO()
    configure("json", stream=out)
    logging.getLogger("lifecycle").setLevel(logging.CRITICAL)  # only the event lines here
    logging.getLogger("lifecycle.events").setLevel(logging.INFO)
    try:
        sup = Supervisor([Db(), Api()], shutdown_timeout=5.0, leak_check=False, log_report=False)
        kinds: list[str] = []
        sup.subscribe(lambda e: kinds.append(e.kind))  # the supervisor logs events itself
        with anyio.fail_after(20):
            async with sup:
                pass
    finally:
        logging.getLogger("lifecycle").setLevel(logging.NOTSET)
        logging.getLogger("lifecycle.events").setLevel(logging.NOTSET)
    lines = [e for e in json_lines(out.getvalue()) if e["logger"] == "lifecycle.events"]
    assert [e["event"] for e in lines] == kinds
    assert kinds[:2] == ["ServiceStarting", "ServiceStarted"] and kinds[-1] == "Stopped"
    started = next(e for e in lines if e["event"] == "ServiceStarted" and e["service"] == "api")
    assert started["message"].startswith("api: started in") and started["level"] == "INFO"
    failed = next(e for e in lines if e["event"] == "StageFinished" and e["stage"] == "close")
    assert failed["level"] == "WARNING" and failed["outcome"] == "error"
    assert failed["error"] == "RuntimeError: socket already closed"
    stopped = lines[-1]
    assert stopped["exit_code"] == 4 and stopped["level"] == "WARNING"


@pytest.mark.anyio
async def test_disabled_events_logger_costs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    class Counting(ServiceStarted):
        def to_dict(self) -> dict[str, object]:
            nonlocal calls
            calls += 1
            return super().to_dict()

    logging.getLogger("lifecycle.events").disabled = True
    try:
        log_events(Counting("db"))
    finally:
        logging.getLogger("lifecycle.events").disabled = False
    assert calls == 0
    with caplog.at_level(logging.INFO, logger="lifecycle.events"):
        log_events(Counting("db"))
    # an event kind it does not know still gets one line, with its fields
    assert calls == 1 and caplog.records[-1].getMessage() == "Counting db elapsed=0.000"
