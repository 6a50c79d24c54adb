"""Every example exposes ``app()`` and guards its ``main``: ``check`` shows the plan and
starts nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_lifecycle_check_plans_the_example_without_starting_it(example: Path, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "lifecycle", "check", f"{example}:app"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("plan for "), proc.stdout
    assert "starting" not in proc.stderr and "report" not in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == []  # nothing opened a database or a spool
