"""``python -m lifecycle run|check``: the plan, the exit codes, logs, trace and report files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lifecycle.cli import main

ROOT = Path(__file__).parent.parent
APP = "tests.apps.cli_app"


def lifecycle(*args: str, mode: str = "", timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CLI_APP_MODE": mode}
    env.pop("NOTIFY_SOCKET", None)
    return subprocess.run([sys.executable, "-m", "lifecycle", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


# ----- check ------------------------------------------------------------------------------
def test_check_prints_the_plan(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", f"{APP}:app"]) == 0
    out = capsys.readouterr().out
    assert "plan for 'cli-app': 3 services, shutdown budget 20 s" in out
    _, start_part, stop_part = out.split("\n\n")
    start = {line.split()[1]: line.split()[0] for line in start_part.splitlines()
             if line.split()[0].isdigit()}
    assert start == {"config": "0", "db": "0", "api": "1"}
    assert "fallback postgres 3s -> sqlite 2s" in out
    assert "worst case: running 15 s after start (db -> api)" in out
    lines = stop_part.splitlines()
    api = next(line for line in lines if line.split()[:2] == ["1", "api"])
    assert "tasks 2s, drain 2s, flush 5s, close 3s" in api and "0 -> 12s" in api
    db = next(line for line in lines if line.split()[:2] == ["2", "db"])
    # a chain: its longest candidate close (sqlite's explicit 3 s; postgres' no-op stop is free)
    assert "stop 3s" in db and "12 -> 15s" in db
    assert "worst case: 15 s of the 20 s budget (api -> db)" in out
    assert "warnings" not in out


def test_check_a_module_attribute_that_is_a_supervisor(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", f"{APP}:instance"]) == 0
    assert "plan for 'cli-app'" in capsys.readouterr().out


def test_check_a_file_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(ROOT / "tests" / "apps" / "cli_app.py") + ":app"]) == 0
    assert "plan for 'cli-app'" in capsys.readouterr().out


def test_check_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", f"{APP}:app", "--json", "--drain-delay", "2"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["budget"] == 20.0 and plan["drain_delay"] == 2.0
    assert plan["worst_close"] == 17.0 and plan["close_path"] == ["api", "db"]
    assert [s["service"] for s in plan["stop"]] == ["api", "config", "db"]
    assert plan["stop"][0]["worst_begin"] == 2.0


@pytest.mark.parametrize(("target", "message"), [
    ("cycle", "configuration error in tests.apps.cli_app:cycle: dependency cycle: a -> b -> a"),
    ("unknown", "service 'api' depends on 'config', which is not in this supervisor"),
    ("not_a_supervisor", "'tests.apps.cli_app:not_a_supervisor' is 42, not a Supervisor"),
    ("nothere", "'tests.apps.cli_app' has no attribute 'nothere'"),
    ("raises", "building the app from 'tests.apps.cli_app:raises' failed: RuntimeError"),
])
def test_check_rejects_a_broken_app_naming_the_offender(
        target: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", f"{APP}:{target}"]) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.out == ""


def test_check_a_missing_module(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "no_such_package.app:app"]) == 2
    assert "cannot import 'no_such_package.app'" in capsys.readouterr().err
    assert main(["check", "tests/apps/nope.py:app"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_budget_override_is_validated(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", f"{APP}:app", "--shutdown-timeout", "8"]) == 2
    assert "service 'api': stop stages add up to 10 s, more than shutdown_timeout=8 s" \
        in capsys.readouterr().err
    assert main(["check", f"{APP}:app", "--drain-delay", "20"]) == 2
    assert "drain_delay=20 s leaves nothing" in capsys.readouterr().err


def test_check_warns_about_a_close_that_may_overrun(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", f"{APP}:tight"]) == 0
    out = capsys.readouterr().out
    assert "OVER BUDGET" in out and "the close needs 18 s, more than the 12 s budget" in out
    assert main(["check", f"{APP}:tight", "--strict"]) == 2


def test_usage_errors_exit_2() -> None:
    assert lifecycle().returncode == 2
    assert lifecycle("run").returncode == 2
    proc = lifecycle("run", f"{APP}:app", "--log-format", "xml")
    assert proc.returncode == 2 and "invalid choice: 'xml'" in proc.stderr
    assert lifecycle("check", f"{APP}:app", "--shutdown-timeout", "-1").returncode == 2


# ----- run --------------------------------------------------------------------------------
def test_run_until_the_app_ends_with_trace_and_report(tmp_path: Path) -> None:
    trace, report = tmp_path / "trace.json", tmp_path / "report.json"
    proc = lifecycle("run", f"{APP}:app", "--trace", str(trace), "--report", str(report),
                     mode="batch")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(report.read_text())
    assert data["ok"] and data["startup"]["db"]["winner"] == "sqlite"
    assert data["reason"] == "run() of 'api' returned"
    events = json.loads(trace.read_text())["traceEvents"]
    names = {(e["tid"], e["name"]) for e in events if e["ph"] == "X"}
    assert {(3, "start"), (3, "drain"), (3, "flush"), (3, "close"), (2, "try postgres")} <= names
    assert "api: started in" in proc.stderr  # the event lines, as text
    assert "lifecycle report for 'cli-app': exit code 0" in proc.stderr


def test_run_json_logs_one_object_per_line() -> None:
    proc = lifecycle("run", f"{APP}:app", "--log-format", "json", mode="batch")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stderr.splitlines()]
    events = [e["event"] for e in lines if e["logger"] == "lifecycle.events"]
    assert events[0] == "ServiceStarting" and "AllStarted" in events and events[-1] == "Stopped"
    failed = next(e for e in lines if e.get("event") == "ServiceStartFailed" or
                  (e["logger"] == "lifecycle" and "postgres" in e["message"]))
    assert "connection refused" in failed["message"]


def test_run_a_failed_start_exits_1() -> None:
    proc = lifecycle("run", f"{APP}:broken_start")
    assert proc.returncode == 1
    assert "broken: start error: OSError: disk full" in proc.stderr


def test_run_a_config_error_exits_2() -> None:
    proc = lifecycle("run", f"{APP}:cycle")
    assert proc.returncode == 2
    assert "dependency cycle: a -> b -> a" in proc.stderr


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_run_stops_cleanly_on_sigterm(backend: str) -> None:
    env = {**os.environ, "CLI_APP_MODE": "serve"}
    env.pop("NOTIFY_SOCKET", None)
    proc = subprocess.Popen([sys.executable, "-m", "lifecycle", "run", f"{APP}:app",
                             "--log-format", "json", "--backend", backend],
                            cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if '"event": "AllStarted"' in line:
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(30), "".join(lines)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, "".join(lines)
    finally:
        proc.kill()
        reader.join(10)
    entries = [json.loads(line) for line in lines]
    requested = next(e for e in entries if e.get("event") == "ShutdownRequested")
    assert requested["reason"] == "signal SIGTERM"
    assert entries[-1]["event"] == "Stopped" or any(e.get("event") == "Stopped" for e in entries)
