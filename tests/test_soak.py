"""The soak benchmark's short version: 25 s of every kind of churn against real servers.

The app (benchmarks/_soak_app.py) flaps, recovers, churns tasks and threads, writes into a
VictoriaMetrics frozen every 1.5 s and queries a PostgreSQL restarted every 10 s; this
process samples it from /proc. The bounds are generous (a loaded 2-core machine, a short
span): no more than a few fds or threads above the early peak, RSS growth after the warm-up
under 10 MiB. ``python -m benchmarks.soak --minutes 10`` is the real measurement.
"""

from __future__ import annotations

import statistics
from typing import Any

import pytest

from benchmarks import soak
from benchmarks._servers import Pool


def test_a_churning_app_keeps_fds_threads_and_memory_flat(fresh_victoria: Any,
                                                          fresh_postgres: Any) -> None:
    plan = soak.plan("smoke")
    log, outcome = soak.soak(plan, Pool(victoria=fresh_victoria, postgres=fresh_postgres))
    verdict = soak.analyse(log, plan.warmup, plan.seconds)

    counts = outcome["counts"]
    assert counts["flapper"]["failures"] >= 10, counts  # the churn really happened
    assert counts["sickly"]["recoveries"] >= 3, counts
    assert outcome["tasks"] >= 1000 and outcome["threads"] >= 200, outcome
    assert len(log.stalls) >= 4 and len(log.restarts) >= 1, (log.stalls, log.restarts)
    assert outcome["points_dropped"] == 0, outcome
    assert outcome["points_written"] + outcome["points_kept"] == outcome["points_sent"], outcome
    assert outcome["queries_ok"] > 100, outcome

    assert verdict.fd_growth <= 3, (verdict, log.fds)
    assert verdict.thread_growth <= 2, (verdict, log.threads)
    assert max(log.rss_mib[-5:]) - verdict.rss_start < 10.0, (verdict, log.rss_mib)


def test_the_slope_is_extrapolated_to_mib_per_hour_after_the_warm_up() -> None:
    log = soak.Samples()
    for second in range(120):
        log.t.append(float(second))
        # A jump during the warm-up, then 1 MiB per hour: only the latter is the slope.
        log.rss_mib.append((10.0 if second < 20 else 50.0) + second / 3600)
        log.fds.append(12 + (second % 3))
        log.threads.append(4 if second < 100 else 6)
    verdict = soak.analyse(log, warmup=30.0)
    assert verdict.slope_mib_per_hour == pytest.approx(1.0)
    assert verdict.late_slope_mib_per_hour == pytest.approx(1.0)
    assert verdict.fd_growth == 0
    assert verdict.thread_growth == 2
    assert verdict.measured == 90
    assert statistics.fmean(log.rss_mib[30:]) > 50.0


def test_quarter_slopes_tell_a_curve_that_levels_off_from_a_steady_climb() -> None:
    log = soak.Samples()
    for second in range(400):
        log.t.append(float(second))
        # 2 MiB/hour for the first 200 s after the warm-up, flat afterwards.
        log.rss_mib.append(60.0 + min(second, 200) * 2 / 3600)
        log.fds.append(12)
        log.threads.append(5)
    verdict = soak.analyse(log, warmup=0.0)
    assert [round(q, 6) for q in verdict.quarter_slopes] == [2.0, 2.0, 0.0, 0.0]
    assert verdict.late_slope_mib_per_hour == pytest.approx(0.0)
    assert verdict.slope_mib_per_hour > 1.0  # the whole span still fits a rise
