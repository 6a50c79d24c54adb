"""Signals to a real process running ``Supervisor.run()`` (issue 11, items 1, 3, 4, 5, 17)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from lifecycle._signals import FORCE_HINT, SIGNAL_REPEAT_WINDOW
from tests.test_signals import App as SignalApp

APP = Path(__file__).parent / "apps" / "hardening_app.py"


class App(SignalApp):
    """The app in a subprocess; stdout and stderr (progress, log lines, the report) merged."""

    def __init__(self, mode: str, backend: str, stdin: Any = subprocess.DEVNULL) -> None:
        super().__init__(mode, backend, script=APP, stdin=stdin, merge_stderr=True)

    def signal(self, signum: int) -> float:
        self.proc.send_signal(signum)
        return time.monotonic()

    def finish(self, timeout: float) -> tuple[int, dict[str, Any], float]:
        """Exit code, report, and the moment the process ended (time.monotonic())."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            self._drain()
            pytest.fail(f"the app did not exit within {timeout}s; saw {self.seen}")
        ended = time.monotonic()
        self._drain()
        reports = [line for line in self.seen if line.startswith("REPORT ")]
        assert reports, f"no report; saw {self.seen}"
        return code, json.loads(reports[-1][len("REPORT "):]), ended

    def _drain(self) -> None:
        self._reader.join(5)
        while not self.lines.empty():
            self.seen.append(self.lines.get())

    def output(self) -> str:
        return "\n".join(self.seen)


def test_a_second_signal_reaches_a_run_that_ignores_the_shutdown_event(backend: str) -> None:
    app = App("plain_run", backend)
    app.wait_for("READY")
    app.signal(signal.SIGINT)
    app.wait_for("CLOSING")
    time.sleep(SIGNAL_REPEAT_WINDOW + 0.25)  # a deliberate second request, not a repeat
    sent = app.signal(signal.SIGINT)
    code, report, ended = app.finish(timeout=30)
    assert ended - sent < 2.0, f"exit {ended - sent:.2f}s after the second signal (goal < 1 s)"
    assert code == 128 + signal.SIGINT
    assert report["shutdown"]["api"]["tasks"]["outcome"] == "cancelled"


def test_signals_delivered_twice_at_once_are_one_request(backend: str) -> None:
    app = App("quick", backend)
    app.wait_for("READY")
    app.signal(signal.SIGINT)
    app.wait_for("CLOSING")
    app.signal(signal.SIGINT)  # the process group got it twice: a child and its parent
    code, report, _ = app.finish(timeout=30)
    assert code == 0, app.output()
    assert report["forced_by"] is None
    assert report["shutdown"]["api"]["drain"]["outcome"] == "ok"
    assert "DB CLOSED" in app.seen
    assert any("SIGINT within" in line and "ignored" in line for line in app.seen)


def test_an_interactive_first_ctrl_c_says_how_to_force(backend: str) -> None:
    leader, follower = os.openpty()  # the app's stdin is a terminal
    try:
        app = App("quick", backend, stdin=follower)
        app.wait_for("READY")
        app.signal(signal.SIGINT)
        code, _, _ = app.finish(timeout=30)
    finally:
        os.close(leader)
        os.close(follower)
    assert code == 0
    assert sum(FORCE_HINT in line for line in app.seen) == 1, app.output()


@pytest.mark.parametrize("mode", ["replace_in_start", "replace_in_run"])
def test_a_replaced_sigterm_handler_is_named_and_restored(backend: str, mode: str) -> None:
    app = App(mode, backend)
    app.wait_for("READY")
    app.wait_for("SIGTERM handler was replaced")
    app.signal(signal.SIGTERM)
    code, report, _ = app.finish(timeout=30)
    assert report["reason"] == "signal SIGTERM", app.output()
    assert "LIBRARY GOT SIGTERM" not in app.seen
    assert code == 0, app.output()


def test_stuck_worker_thread_neither_blocks_the_exit_nor_goes_unnamed(backend: str) -> None:
    app = App("stuck_thread", backend)
    app.wait_for("READY")
    app.signal(signal.SIGTERM)
    app.wait_for("STUCK")
    code, report, _ = app.finish(timeout=15)  # the thread sleeps 60 s
    assert code == report["exit_code"] == 4
    assert report["shutdown"]["api"]["drain"]["outcome"] == "abandoned"
    leaked = [t["name"] for t in report["leaks"]["threads"]]
    assert leaked, "the busy worker thread was taken for an idle one"
    if backend == "asyncio":  # trio's worker threads are daemons: they do not hold the exit
        assert any("still run" in line and leaked[0] in line for line in app.seen), app.output()


def test_a_forced_exit_is_not_held_by_a_thread_stuck_in_a_hook(backend: str) -> None:
    app = App("stuck_thread", backend)
    app.wait_for("READY")
    app.signal(signal.SIGINT)
    app.wait_for("STUCK")
    time.sleep(SIGNAL_REPEAT_WINDOW + 0.25)
    sent = app.signal(signal.SIGINT)
    code, report, ended = app.finish(timeout=15)
    assert code == 128 + signal.SIGINT
    assert report["forced_by"] == signal.SIGINT
    assert ended - sent < 3.0, f"exit {ended - sent:.2f}s after the second signal"
