"""Under a systemd watchdog, the blocked loop's stack is logged before the watchdog would
fire: the app runs in a subprocess against a fake systemd (a real datagram socket) that
timestamps every ``WATCHDOG=1``; the test timestamps the detector's log line as it arrives."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.test_systemd import FakeSystemd, collect

APP = Path(__file__).parent / "apps" / "notify_app.py"
ROOT = Path(__file__).parent.parent
WATCHDOG = 2.0  # WatchdogSec: systemd kills the unit this long after the last WATCHDOG=1


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_blocked_stack_is_logged_before_the_watchdog_would_fire(backend: str) -> None:
    fake = FakeSystemd(f"@lc-{uuid.uuid4().hex}")
    lines: list[tuple[float, str]] = []
    try:
        proc = subprocess.Popen(
            [sys.executable, str(APP), "block", backend], cwd=ROOT, text=True,
            env={**os.environ, "NOTIFY_SOCKET": fake.address,
                 "WATCHDOG_USEC": str(int(WATCHDOG * 1e6))},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def read() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                lines.append((time.monotonic(), line))

        reader = threading.Thread(target=read, name="stderr-reader")
        reader.start()
        collect(fake, proc, "STATUS=stopped (exit code 0)", 40)
        assert proc.wait(30) == 0
        reader.join(10)
    finally:
        fake.close()
    [(logged, line)] = [(at, text) for at, text in lines if "event loop blocked" in text]
    assert "in service 'worker' at tests/apps/notify_app.py:" in line and "time.sleep" in line
    pings = [at for at, f in fake.messages if f == "WATCHDOG=1"]
    last = max(at for at in pings if at < logged)
    silence = min((at for at in pings if at > logged), default=float("inf")) - last
    assert silence > WATCHDOG, "the block was long enough for the watchdog to fire"
    assert logged < last + WATCHDOG, (logged - last, pings)
