"""The startup/shutdown timeline as a Chrome trace (Perfetto)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from lifecycle import Fallback, LifecycleReport, RestartPolicy, Service, Stage, Supervisor
from lifecycle.trace import chrome_trace, write_trace


class Refused(Service):
    async def start(self) -> None:
        await anyio.sleep(0.05)
        raise ConnectionRefusedError("connection refused")


class Local(Service):
    async def start(self) -> None:
        await anyio.sleep(0.02)


class Api(Service):
    depends_on = ("db",)
    stop_stages = (Stage("drain", 0.5), Stage("flush", 0.2), Stage("close", 0.5))

    async def start(self) -> None:
        await anyio.sleep(0.03)

    async def drain(self) -> None:
        await anyio.sleep(0.02)

    async def flush(self) -> None:
        await anyio.sleep(30)  # overruns: cancelled after 0.2 s

    async def close(self) -> None:
        pass


async def a_report() -> LifecycleReport:
    sup = Supervisor([Fallback("db", Refused(name="postgres"), Local(name="sqlite")), Api()],
                     shutdown_timeout=5.0, leak_check=False, log_report=False)
    with anyio.fail_after(20):
        async with sup:
            pass
    return sup.report


def slices(trace: dict[str, Any], tid: int) -> list[dict[str, Any]]:
    return [e for e in trace["traceEvents"] if e["ph"] == "X" and e["tid"] == tid]


@pytest.mark.anyio
async def test_one_track_per_service_with_starts_and_stages() -> None:
    report = await a_report()
    trace = json.loads(json.dumps(chrome_trace(report)))  # JSON-safe
    meta = {e["args"]["name"]: e["tid"] for e in trace["traceEvents"]
            if e["ph"] == "M" and e["name"] == "thread_name"}
    assert meta == {"supervisor": 0, "db": 1, "api": 2}

    db = slices(trace, meta["db"])
    assert [e["name"] for e in db] == ["start", "try postgres", "try sqlite", "stop"]
    start, postgres, sqlite, _ = db
    assert start["args"] == {"outcome": "ok", "deadline": start["args"]["deadline"],
                             "optional": False, "winner": "sqlite"}
    assert postgres["args"]["outcome"] == "error"
    assert postgres["args"]["error"] == "ConnectionRefusedError: connection refused"
    # attempts nest inside the start, one after the other
    assert start["ts"] <= postgres["ts"] < sqlite["ts"]
    assert sqlite["ts"] + sqlite["dur"] <= start["ts"] + start["dur"] + 1
    assert postgres["dur"] >= 50_000  # microseconds

    api = slices(trace, meta["api"])
    assert [e["name"] for e in api] == ["start", "drain", "flush (timeout)", "close"]
    api_start, drain, flush, close = api
    assert api_start["ts"] >= start["ts"] + start["dur"] - 1  # api waited for db
    assert drain["ts"] + drain["dur"] <= flush["ts"] + 1 and flush["ts"] + flush["dur"] <= close["ts"] + 1
    assert flush["args"]["deadline"] == 0.2 and flush["args"]["outcome"] == "timeout"
    assert "in flush" in flush["args"]["stack"]
    assert 0.15e6 < flush["dur"] < 2e6
    # the close runs in reverse dependency order: db stops after api
    assert db[-1]["ts"] >= close["ts"] + close["dur"] - 1

    rec = report.stage("api", "flush")
    assert flush["ts"] == pytest.approx(rec.began * 1e6, abs=1)
    assert flush["dur"] == pytest.approx(rec.elapsed * 1e6, abs=1)

    phases = {e["name"]: e for e in slices(trace, 0)}
    assert phases["startup"]["dur"] == pytest.approx(report.startup_elapsed * 1e6, abs=1)
    closing = phases.get("shutdown") or phases["stopping services"]
    assert closing["ts"] >= phases["startup"]["ts"] + phases["startup"]["dur"] - 1
    assert trace["otherData"] == {"app": "app", "exit_code": 4, "ok": False}


@pytest.mark.anyio
async def test_written_file_is_a_trace(tmp_path: Path) -> None:
    report = await a_report()
    path = tmp_path / "trace.json"
    write_trace(report, path)
    data = json.loads(path.read_text())
    assert data["displayTimeUnit"] == "ms"
    assert all({"name", "ph", "pid", "tid"} <= e.keys() for e in data["traceEvents"])
    assert all(isinstance(e["ts"], (int, float)) and e["dur"] >= 0
               for e in data["traceEvents"] if e["ph"] == "X")


def test_an_empty_report_is_an_empty_timeline() -> None:
    trace = chrome_trace(LifecycleReport(name="nothing"))
    assert [e for e in trace["traceEvents"] if e["ph"] == "X"] == []


@pytest.mark.anyio
async def test_restarts_are_instants_on_their_track() -> None:
    again = anyio.Event()

    class Flaky(Service):
        restart = RestartPolicy(backoff=(0.01, 0.02))
        runs = 0

        async def run(self) -> None:
            self.runs += 1
            if self.runs == 1:
                raise ConnectionResetError("peer went away")
            again.set()
            await self.wait_shutdown()

    sup = Supervisor([Flaky()], shutdown_timeout=5.0, leak_check=False, log_report=False)
    with anyio.fail_after(20):
        async with sup:
            await again.wait()
    trace = chrome_trace(sup.report)
    [instant] = [e for e in trace["traceEvents"] if e["ph"] == "i"]
    assert instant["name"] == "restart run #1" and instant["tid"] == 1
    assert instant["args"]["delay"] <= 0.02 and instant["args"]["attempt"] == 1
    start = slices(trace, 1)[0]
    assert instant["ts"] >= start["ts"] + start["dur"] - 1  # after the start
