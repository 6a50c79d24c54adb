"""Two real processes behind one fallback chain, with the real PostgreSQL down at start.

Both run degraded on their own SQLite files and say so on their probes; with
``degraded_ready=False`` neither is ready (a load balancer keeps both out, instead of
letting the data split). PostgreSQL is then started: each instance's recheck sees it,
raises the event, and exits with code 75 so that systemd or Kubernetes restart it onto
PostgreSQL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from lifecycle import ExitCode
from tests.servers import free_port, wait_until

pytestmark = pytest.mark.servers
ROOT = Path(__file__).parent.parent


def probe(port: int, path: str) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) of a probe; (0, {}) while nothing listens yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return 0, {}


def test_two_instances_run_degraded_not_ready_then_restart_onto_postgres(
    fresh_postgres: Any, tmp_path: Path,
) -> None:
    fresh_postgres.stop()
    instances = []
    for n in (1, 2):
        port = free_port()
        report = tmp_path / f"report-{n}.json"
        env = {**os.environ, "DATABASE_URL": fresh_postgres.dsn,
               "APP_SQLITE": str(tmp_path / f"instance-{n}.db"), "APP_HEALTH_PORT": str(port),
               "APP_DEGRADED_READY": "0", "APP_RECHECK": "0.3"}
        env.pop("NOTIFY_SOCKET", None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "lifecycle", "run", "tests.apps.degraded_app:app",
             "--report", str(report)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        instances.append((proc, port, report))
    try:
        for _, port, _ in instances:
            wait_until(lambda port=port: probe(port, "/startupz")[0] == 200, 30,  # type: ignore[misc]
                       f"instance on port {port} to start")
            status, body = probe(port, "/readyz")
            assert status == 503, body
            assert body["degraded"] == ["db"]
            assert body["services"]["db"]["winner"] == "sqlite"
            assert body["services"]["db"]["preferred"] == "postgres"
            assert fresh_postgres.password not in json.dumps(body)
        fresh_postgres.start()
        outputs = [proc.communicate(timeout=60) for proc, _, _ in instances]
    finally:
        for proc, _, _ in instances:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    for (proc, _, report), (_, stderr) in zip(instances, outputs, strict=True):
        assert proc.returncode == ExitCode.RESTART_REQUESTED == 75, stderr
        assert "db: DEGRADED, running on sqlite instead of postgres" in stderr
        assert "db: preferred candidate postgres answers again; restarting onto it" in stderr
        assert fresh_postgres.password not in stderr
        saved = json.loads(report.read_text())
        assert saved["degraded"] == {"db": "sqlite"}
        assert "postgres" in saved["restart_requested"]
        assert saved["leaks"]["ok"], stderr
