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
