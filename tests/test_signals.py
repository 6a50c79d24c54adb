"""SIGTERM/SIGINT to a real process running ``Supervisor.run()``."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from lifecycle._signals import SIGNAL_REPEAT_WINDOW

APP = Path(__file__).parent / "apps" / "signal_app.py"


class App:
    """The app in a subprocess, with its stdout read line by line in a thread."""

    def __init__(self, mode: str, backend: str, *, script: Path = APP, stdin: Any = None,
                 merge_stderr: bool = False, env: dict[str, str] | None = None) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        stderr = subprocess.STDOUT if merge_stderr else subprocess.PIPE
        self.proc = subprocess.Popen([sys.executable, str(script), mode, backend], stdin=stdin,
                                     stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
        self.lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.seen: list[str] = []

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, wanted: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(wanted in line for line in self.seen):
            try:
                self.seen.append(self.lines.get(timeout=max(deadline - time.monotonic(), 0.01)))
            except queue.Empty:
                self.kill()
                pytest.fail(f"no {wanted!r} from the app; saw {self.seen}; stderr: {self.stderr()}")

    def finish(self, timeout: float) -> tuple[int, dict[str, Any], float]:
        began = time.monotonic()
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the app did not exit within {timeout}s; stderr: {self.stderr()}")
        elapsed = time.monotonic() - began
        self._reader.join(5)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return code, json.loads(self.seen[-1]), elapsed

    def stderr(self) -> str:
        return self.proc.stderr.read() if self.proc.stderr and self.proc.poll() is not None else ""

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(5)


def test_sigterm_gives_a_clean_exit_and_the_report(backend: str) -> None:
    app = App("normal", backend)
    app.wait_for("READY")
    app.proc.send_signal(signal.SIGTERM)
    code, report, elapsed = app.finish(timeout=15)
    assert code == 0, report
    assert report["ok"] and report["reason"] == "signal SIGTERM"
    assert elapsed < 5.0
    assert report["shutdown"]["api"]["drain"]["outcome"] == "ok"


def test_sigterm_during_a_slow_startup_aborts_it_cleanly(backend: str) -> None:
    app = App("slow_start", backend)
    app.wait_for("STARTING db")
    app.proc.send_signal(signal.SIGTERM)
    code, report, elapsed = app.finish(timeout=15)
    assert elapsed < 5.0, "the 30 s start was not cut short"
    assert report["startup"]["db"]["outcome"] == "cancelled"
    assert report["startup"]["api"]["outcome"] == "skipped"
    assert report["reason"] == "signal SIGTERM"
    assert code == 0, report  # asked to stop, and stopped cleanly
    assert "READY" not in app.seen


def test_second_sigint_forces_the_exit_fast(backend: str) -> None:
    app = App("stubborn", backend)
    app.wait_for("READY")
    app.proc.send_signal(signal.SIGINT)
    app.wait_for("DRAINING")
    time.sleep(SIGNAL_REPEAT_WINDOW + 0.25)  # a deliberate second request, not a repeat
    app.proc.send_signal(signal.SIGINT)
    code, report, elapsed = app.finish(timeout=15)
    assert elapsed < 3.0, "the second SIGINT did not cut the 20 s drain short"
    assert code == 128 + signal.SIGINT
    assert report["forced_by"] == signal.SIGINT
    assert report["shutdown"]["api"]["drain"]["outcome"] == "cancelled"
