"""The examples run as a user would run them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_quickstart_runs_and_reports_the_overrunning_stage() -> None:
    proc = subprocess.run([sys.executable, str(EXAMPLES / "quickstart.py"), "--seconds", "0.5"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "would now exit with code 4" in proc.stdout  # the flush stage overran, by design
    out = proc.stdout
    assert "lifecycle report for 'quickstart': exit code 4 (unclean shutdown)" in out
    assert "ingest.flush: timeout" in out and "in flush" in out
    assert "ingest   close  ok" in out or "close  ok" in out
    assert "closed (the close still ran" in proc.stderr


def _guardian(*args: str) -> str:
    proc = subprocess.run([sys.executable, str(EXAMPLES / "guardian.py"), *args],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_guardian_recovers_the_real_corruption_once_and_never_loops() -> None:
    out = _guardian("--simulate", "300")
    assert out.startswith("guarded guardian over 300 s: 1 recoveries, 2 table versions, 1 alert(s)"), out
    assert "v1 is corrupt" in out and "not initialised" not in out


def test_naive_guardian_is_still_stopped_by_the_restart_budget() -> None:
    out = _guardian("--simulate", "300", "--naive")
    assert "3 recoveries, 4 table versions, 1 alert(s)" in out, out  # max_restarts=3, then give up


def test_guardian_runs_in_real_time() -> None:
    out = _guardian("--seconds", "1.5", "--init-seconds", "0.1")
    assert out.startswith("guarded guardian over 1.5 s: 0 recoveries, 1 table versions"), out
