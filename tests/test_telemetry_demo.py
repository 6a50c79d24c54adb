"""The README's demo, end to end, as a user runs it: on embedded defaults, then on servers."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parent.parent
DEMO = ROOT / "examples" / "telemetry_app.py"
CONFIG = ("DATABASE_URL", "INFLUXDB_URL", "INFLUXDB_TOKEN", "INFLUXDB_ORG", "INFLUXDB_BUCKET",
          "INFLUXDB_SPOOL_DIR", "NOTIFY_SOCKET", "PGPASSWORD")


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    report: dict[str, Any]
    probe: dict[str, Any] = field(default_factory=dict)


def run_demo(tmp_path: Path, seconds: float = 3.0, **env: str) -> Run:
    """Run the demo; while it runs, ask its readiness probe over real HTTP."""
    environ = {k: v for k, v in os.environ.items() if k not in CONFIG} | env
    report_path, log_path = tmp_path / "report.json", tmp_path / "stderr.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, str(DEMO), "--seconds", str(seconds), "--data-dir",
             str(tmp_path / "data"), "--report-json", str(report_path)],
            cwd=ROOT, env=environ, stdout=subprocess.PIPE, stderr=log, text=True)
    out: list[str] = []
    probe: dict[str, Any] = {}

    def read_stdout() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.append(line)
            if line.startswith("health probes: "):
                try:  # everything runs now
                    with urllib.request.urlopen(line.split()[2], timeout=10) as resp:
                        probe.update(status=resp.status, body=json.loads(resp.read()))
                except Exception as exc:
                    probe["error"] = repr(exc)

    reader = threading.Thread(target=read_stdout, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=60)
    finally:
        proc.kill()
    reader.join(10)
    stdout, stderr = "".join(out), log_path.read_text()
    assert proc.returncode == 0, f"{stdout}\n{stderr}"
    return Run(proc.returncode, stdout, stderr, json.loads(report_path.read_text()), probe)


def test_demo_falls_back_spools_answers_probes_and_shuts_down_clean(tmp_path: Path) -> None:
    run = run_demo(tmp_path)
    assert run.probe.get("status") == 200, (run.probe, run.stdout, run.stderr)
    assert run.probe["body"]["ready"] is True
    assert run.probe["body"]["services"]["db"]["winner"] == "sqlite"

    report = run.report
    assert report["ok"] and report["exit_code"] == 0, run.stdout
    assert report["leaks"] is None or report["leaks"]["ok"]
    assert report["reason"] == "stop_after: ran for 3s"
    db = report["startup"]["db"]
    assert db["winner"] == "sqlite"
    assert [a["candidate"] for a in db["attempts"]] == ["postgres", "sqlite"]
    assert "DATABASE_URL is not set" in db["attempts"][0]["error"]

    metrics = report["details"]["metrics"]
    assert metrics["mode"] == "spool-only"
    assert metrics["accepted"] >= 3 * 3  # three sensors, several samples
    assert metrics["accepted"] == metrics["in_spool"] and metrics["dropped"] == 0
    sensors = report["details"]["sensors"]
    assert sensors["rows_in_db"] == 3 * sensors["samples"] == metrics["accepted"]
    with sqlite3.connect(tmp_path / "data" / "telemetry.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM readings").fetchone()[0] == sensors["rows_in_db"]

    assert "lifecycle report for 'telemetry': exit code 0 (ok)" in run.stdout
    assert "db: sqlite" in run.stdout and "metrics (spool-only): accepted" in run.stdout


@pytest.mark.servers
def test_demo_on_real_servers_and_keeps_secrets(tmp_path: Path, postgres: Any,
                                                victoria: Any) -> None:
    token = "demo-token-8f1e2a"
    run = run_demo(tmp_path, DATABASE_URL=postgres.dsn, INFLUXDB_URL=victoria.url,
                   INFLUXDB_TOKEN=token, INFLUXDB_ORG="demo", INFLUXDB_BUCKET="demo")
    report = run.report
    assert report["ok"], run.stdout
    assert report["startup"]["db"]["winner"] == "postgres"
    assert run.probe["body"]["services"]["db"]["winner"] == "postgres"
    metrics = report["details"]["metrics"]
    assert metrics["mode"] == "online" and metrics["accepted"] >= 9
    assert metrics["written"] == metrics["accepted"] and metrics["in_spool"] == 0
    assert victoria.count("temperature_celsius") >= metrics["written"]
    assert report["details"]["sensors"]["rows_in_db"] >= metrics["accepted"]
    everything = run.stdout + run.stderr + json.dumps(report)
    assert token not in everything and postgres.password not in everything


def test_demo_plan_under_the_cli() -> None:
    proc = subprocess.run([sys.executable, "-m", "lifecycle", "check",
                           "examples/telemetry_app.py:app", "--strict"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "fallback postgres 5s -> sqlite 10s" in proc.stdout
    assert "after db, metrics" in proc.stdout and "warnings" not in proc.stdout
