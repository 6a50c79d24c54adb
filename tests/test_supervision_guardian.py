"""The seed replay: the guardian incident, with the example program's own services.

Tables take 5-15 s to initialise (seeded), the detector flags a table that is not ready yet,
scans run every second. Simulated time (trio's MockClock).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from trio.testing import MockClock

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "guardian.py"


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return "trio", {"clock": MockClock(autojump_threshold=0)}


@pytest.fixture(scope="module")
def guardian() -> ModuleType:
    spec = importlib.util.spec_from_file_location("guardian_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seed", range(6))
async def test_with_grace_and_cooldown_the_real_corruption_is_recovered_once(
        guardian: ModuleType, seed: int) -> None:
    db = guardian.Database((5.0, 15.0), seed=seed)
    report = await guardian.run_for(300.0, False, db)
    assert [r.reason for r in report.restarts] == ["recover: v1 is corrupt"]
    assert report.details["guardian"] == {"alerts": 1, "versions": 2}
    assert not report.health["guardian"]["escalated"]
    assert not report.health["guardian"]["incident"]  # healthy for the stable period again


@pytest.mark.parametrize("naive", [False, True])
async def test_a_permanently_wrong_detector_escalates_after_max_recoveries_with_one_alert(
        guardian: ModuleType, naive: bool) -> None:
    db = guardian.Database((5.0, 15.0))
    report = await guardian.run_for(3600.0, naive, db, True)  # ~109 recoveries an hour before
    assert len(report.restarts) == guardian.Guardian.restart.max_recoveries == 3
    assert report.details["guardian"] == {"alerts": 1, "versions": 4}
    state = report.health["guardian"]
    assert state["escalated"] and state["escalation"].startswith(
        "3 recoveries of 'guardian' did not restore health")
    assert report.counts["guardian"].escalations == 1


def test_the_broken_detector_mode_of_the_program_shows_the_escalation() -> None:
    proc = subprocess.run([sys.executable, str(EXAMPLE), "--simulate", "3600", "--broken-detector"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "guarded guardian over 3600 s: 3 recoveries, 4 table versions, 1 alert(s)"
    assert lines[-1].startswith("escalated (give_up): 3 recoveries of 'guardian' did not restore health")
