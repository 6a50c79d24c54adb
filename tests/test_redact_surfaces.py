"""A secret put into every kind of recorded text reaches no surface (issue: secrets).

The app in tests/apps/secret_app.py leaks one secret into a ``run()`` traceback, a start
error, a stage stack, a leak stack and a health reason. Every surface is searched: log
records of every logger at DEBUG (message and traceback), the report's text and dict, the
trace export, the health probes' JSON, and the CLI's output and files. Each check also
asserts that the leak really happened (the masked text is there), so none passes vacuously.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import anyio
import pytest

from lifecycle import Supervisor
from lifecycle.adapters.http import HealthServer
from lifecycle.trace import chrome_trace
from tests.apps.secret_app import SECRET, services

ROOT = Path(__file__).parent.parent


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the health server is aiohttp


def record_texts(caplog: pytest.LogCaptureFixture) -> list[str]:
    formatter = logging.Formatter()
    texts = []
    for record in caplog.records:
        texts.append(record.getMessage())
        if record.exc_info:
            texts.append(formatter.formatException(record.exc_info))
        texts.append(repr(record.__dict__))
    return texts


def assert_every_kind_was_recorded(report_text: str) -> None:
    """The leaks happened and were masked (so a missing secret is not a missing text)."""
    assert "could not log in with ***" in report_text           # run() traceback
    assert "postgresql://app:***@db/app" in report_text         # start error
    assert "await anyio.sleep(30)  # ***" in report_text        # stage stack
    assert "time.sleep(seconds)  # ***" in report_text          # leak stack


@pytest.mark.anyio
async def test_a_secret_reaches_no_surface_in_process(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger: every logger's records
    health = HealthServer("127.0.0.1", 0)
    sup = Supervisor([*services(), health], shutdown_timeout=5.0, name="secret-app")
    async with sup:
        unhealthy = sup["unhealthy"]
        with anyio.fail_after(10):
            while sup.health()["services"]["unhealthy"].get("reason", "") == "":
                await unhealthy.sleep(0.02)
        async with aiohttp.ClientSession() as session, session.get(
                f"{health.url}/readyz") as response:
            probe = await response.text()
        assert "token *** was refused" in probe
        assert SECRET not in probe
    report = sup.report
    text = report.format()
    as_dict = json.dumps(report.to_dict(), default=str)
    trace = json.dumps(chrome_trace(report))
    assert_every_kind_was_recorded(as_dict.replace("\\n", "\n"))
    for surface in (text, as_dict, trace, json.dumps(sup.health()), *record_texts(caplog)):
        assert SECRET not in surface


def test_a_secret_reaches_no_surface_of_the_cli(tmp_path: Path) -> None:
    trace, report = tmp_path / "trace.json", tmp_path / "report.json"
    env = {**os.environ, "SECRET_APP_SECONDS": "1.0"}
    env.pop("NOTIFY_SOCKET", None)
    done = subprocess.run(
        [sys.executable, "-m", "lifecycle", "run", "tests.apps.secret_app:app",
         "--log-level", "DEBUG", "--trace", str(trace), "--report", str(report)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    output = done.stdout + done.stderr
    assert_every_kind_was_recorded(output)
    for surface in (output, trace.read_text(), report.read_text()):
        assert SECRET not in surface
