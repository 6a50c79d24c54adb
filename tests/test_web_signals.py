"""Real signals to a real web app process: the supervisor owns them, the servers never do."""

from __future__ import annotations

import signal
import threading
import time
import urllib.error
import urllib.request

import pytest

from benchmarks.rolling_restart import SERVERS, AppProcess
from lifecycle._signals import SIGNAL_REPEAT_WINDOW
from tests.servers import free_port


def fetch(url: str, out: dict[str, object]) -> None:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            out["status"], out["body"] = resp.status, resp.read().decode()
    except (urllib.error.URLError, OSError) as exc:
        out["error"] = repr(exc)


def request_in_thread(url: str) -> tuple[threading.Thread, dict[str, object]]:
    out: dict[str, object] = {}
    thread = threading.Thread(target=fetch, args=(url, out), daemon=True)
    thread.start()
    return thread, out


@pytest.mark.parametrize("server", SERVERS)
def test_a_one_second_request_started_before_sigterm_returns_200_and_the_exit_is_0(
        server: str) -> None:
    port = free_port()
    app = AppProcess(server, port, drain=0.0)
    app.start()
    try:
        thread, out = request_in_thread(f"http://127.0.0.1:{port}/slow?s=1")
        app.wait_for("SLOW", 30)  # the handler runs: now the signal
        code, report = app.terminate(signal.SIGTERM)
    finally:
        app.close()
    thread.join(30)
    assert out.get("status") == 200, out
    assert code == 0, report  # one SIGTERM: a clean exit, never 143
    assert report["ok"] and report["reason"] == "signal SIGTERM"
    finish = report["shutdown"]["web"]["finish_requests"]
    assert finish["outcome"] == "ok" and finish["elapsed"] > 0.5


@pytest.mark.parametrize(("server", "sig"), [("uvicorn", signal.SIGTERM), ("hypercorn", signal.SIGINT),
                                             ("aiohttp", signal.SIGTERM)])
def test_a_second_signal_forces_the_close_of_a_hung_request(server: str, sig: signal.Signals) -> None:
    port = free_port()
    app = AppProcess(server, port, drain=0.0)
    app.args.append("30")  # graceful_timeout: the hung request would hold the close 30 s
    app.start()
    try:
        thread, out = request_in_thread(f"http://127.0.0.1:{port}/hang")
        app.wait_for("HANG", 30)
        assert app.proc is not None
        app.proc.send_signal(sig)
        app.wait_for("SHUTDOWN", 30)
        time.sleep(SIGNAL_REPEAT_WINDOW + 0.25)  # a deliberate second request, not a repeat
        began = time.monotonic()
        code, report = app.terminate(sig)
        elapsed = time.monotonic() - began
    finally:
        app.close()
    thread.join(30)
    assert code == 128 + sig, report
    assert report["forced_by"] == sig
    assert elapsed < 10.0
    assert "status" not in out  # the hung request was cut, not answered
