"""examples/web_app.py (FastAPI) and examples/web_app_aiohttp.py run as a user runs them:
real HTTP traffic, a real SIGTERM, the report read back."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {"fastapi-uvicorn": ["examples/web_app.py"],
            "fastapi-hypercorn": ["examples/web_app.py", "--server", "hypercorn"],
            "aiohttp": ["examples/web_app_aiohttp.py"]}


def call(method: str, url: str) -> tuple[int, Any]:
    request = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(request, timeout=30) as resp:
        return resp.status, json.loads(resp.read())


def run_example(args: list[str], tmp_path: Path, **env: str) -> tuple[str, dict[str, Any], str]:
    """Start, post readings, check the probes, SIGTERM; (url, report, stdout)."""
    report_path = tmp_path / "report.json"
    proc = subprocess.Popen([sys.executable, *args, "--port", "0", "--drain", "0.5",
                             "--data-dir", str(tmp_path / "data"), "--report-json", str(report_path)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={k: v for k, v in {**os.environ, **env}.items()
                                 if k != "DATABASE_URL" or "DATABASE_URL" in env})
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout or ()], daemon=True).start()
    try:
        line = ""
        while not line.startswith("serving on "):
            line = lines.get(timeout=60)
        url = line.split()[2]
        before = call("GET", f"{url}/readings")[1]["readings"]  # a shared Postgres has rows
        for celsius in (20.5, 21.0, 22.5):
            assert call("POST", f"{url}/readings/boiler?celsius={celsius}")[0] == 200
        assert call("GET", f"{url}/readings") == (200, {"readings": before + 3})
        status, ready = call("GET", f"{url}/readyz")
        assert status == 200 and ready["ready"] is True
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    stdout = "".join(iter(lambda: lines.get(timeout=5) if not lines.empty() else "", ""))
    assert code == 0, (stdout, proc.stderr.read() if proc.stderr else "")
    return url, json.loads(report_path.read_text()), stdout


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_web_example_serves_falls_back_to_sqlite_and_stops_clean(variant: str,
                                                                      tmp_path: Path) -> None:
    _, report, _ = run_example(VARIANTS[variant], tmp_path)
    assert report["ok"], report
    assert report["startup"]["db"]["winner"] == "sqlite"
    assert report["details"]["metrics"]["accepted"] >= 3  # the readings (and any rollups)
    assert list(report["shutdown"]["web"]) == ["stop_accepting", "finish_requests",
                                               "close_connections", "lifespan_shutdown"]
    # the web service stops before what it depends on
    began = {name: min(s["began"] for s in stages.values())
             for name, stages in report["shutdown"].items()}
    assert began["web"] < began["db"] and began["web"] < began["metrics"]


def test_the_web_example_uses_postgres_when_it_answers(tmp_path: Path, postgres: Any) -> None:
    _, report, _ = run_example(VARIANTS["fastapi-uvicorn"], tmp_path, DATABASE_URL=postgres.dsn)
    assert report["ok"], report
    assert report["startup"]["db"]["winner"] == "postgres"
    assert postgres.password not in json.dumps(report)


@pytest.mark.parametrize("target", ["examples/web_app.py:app", "examples/web_app_aiohttp.py:app"])
def test_the_web_example_close_plan_fits_its_budget(target: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "lifecycle", "check", target, "--strict"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "stop_accepting 1s, finish_requests 5s, close_connections 2s, lifespan_shutdown 3s" \
        in proc.stdout
