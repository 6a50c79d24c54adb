"""Every benchmark at "smoke" size: tiny, one repeat, only checking that the harness runs
and every row holds a sane figure. Timing goals are the benchmarks' business, not CI's
(`python -m benchmarks` runs the real thing)."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from benchmarks import (
    MODULES,
    Result,
    fallback,
    influx,
    leakcheck,
    overhead,
    rolling_restart,
    shutdown,
    spool,
    startup,
)
from benchmarks._report import Section, console, document, machine
from benchmarks._servers import Pool

ROOT = Path(__file__).resolve().parent.parent


def check(results: list[Result], benchmark: str) -> None:
    assert results
    for r in results:
        assert r.benchmark == benchmark
        assert r.sane, r
        assert r.met is None or r.goal, r  # a verdict always says what it was held to
    assert any(r.goal for r in results), "every benchmark holds lifecycle to a goal"


@pytest.mark.parametrize("module", [shutdown, startup, overhead, leakcheck],
                         ids=lambda m: m.NAME)
def test_core_benchmark(module: Any) -> None:
    check(module.run("smoke"), module.NAME)


def test_influx(victoria: Any, blackhole: tuple[str, int]) -> None:
    check(influx.run("smoke", pool=Pool(victoria=victoria, stalled=blackhole)), "influx")


def test_spool(victoria: Any) -> None:
    check(spool.run("smoke", pool=Pool(victoria=victoria)), "spool")


def test_fallback(postgres: Any, closed_port: tuple[str, int],
                  blackhole: tuple[str, int]) -> None:
    pool = Pool(postgres=postgres, closed_port=closed_port, blackhole=blackhole)
    results = fallback.run("smoke", pool=pool)
    check(results, "fallback")
    assert {r.note.split(";")[0] for r in results} == {"winner: sqlite", "winner: postgres"}


def test_rolling_restart(haproxy: Any) -> None:
    results = rolling_restart.run("smoke", balancer_factory=haproxy)
    check(results, "rolling_restart")
    assert all(r.met for r in results), results  # no failed request with a drain


def test_every_module_is_listed() -> None:
    names = {p.stem for p in (ROOT / "benchmarks").glob("*.py") if not p.stem.startswith("_")}
    assert names == set(MODULES)


def test_report_renders(tmp_path: Path) -> None:
    results = [Result("leakcheck", "lifecycle", 0.5, "ms", 0.5, "< 1 ms", True, 0.4, 3),
               Result("leakcheck", "peer", 2.0, "ms", 4.0)]
    sections = [Section(leakcheck, results), Section(shutdown, error="BenchmarkError: no\n")]
    text = document(sections, command="python -m benchmarks", seconds=1.0, info=machine(),
                    began=datetime(2024, 1, 1, tzinfo=timezone.utc))
    assert "| leakcheck | lifecycle | < 1 ms | 0.5 ms (0.5\u00d7) | **met** |" in text
    assert "not run" in text
    assert "Python" in text
    assert "lifecycle" in console(sections[0])


def test_command_line_smoke(tmp_path: Path) -> None:
    out = tmp_path / "performance.md"
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--smoke", "--only", "leakcheck",
                           "--output", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "clean LeakCheck" in proc.stdout
    assert not out.exists()  # smoke runs never write the report
