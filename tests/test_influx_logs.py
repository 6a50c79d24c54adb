"""The writer's log tells an outage's story in six lines, not one per batch: the breaker
opens and closes, spooling starts and ends, replay starts and finishes (memory mode; in
disk mode every point is spooled and replayed, so only the breaker's two lines are told)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from lifecycle import Supervisor
from lifecycle.adapters.influx import InfluxWriter
from tests.servers.http_faults import PASS, FaultProxy, unavailable
from tests.servers.victoria import VictoriaMetrics

BASE = time.time_ns() - 3600 * 10**9
STORY = ("circuit breaker opened", "spooling started", "circuit breaker closed",
         "spooling ended", "replay of the spool", "replay finished")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_an_outage_is_six_log_lines_whatever_the_number_of_batches(
        victoria: VictoriaMetrics, unique_tag: str, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="lifecycle.adapters.influx")
    fast: dict[str, Any] = dict(durability="memory", timeout=1.0, connect_timeout=0.5, max_attempts=1,
                                retry_backoff=(0.05, 0.2), breaker_threshold=2,
                                breaker_reset=(0.3, 0.3), flush_interval=0.02)
    async with FaultProxy(victoria.url, default=unavailable()) as proxy:
        w = InfluxWriter(proxy.url, "t", "o", "b", spool_path=tmp_path, batch_size=100, **fast)
        async with Supervisor([w], shutdown_timeout=15.0):
            for k in range(30):  # 30 batches into the outage
                w.write_many([f"logs,test={unique_tag} value={i}i {BASE + i * 10**6}"
                              for i in range(k * 100, k * 100 + 100)])
                await anyio.sleep(0.03)
            assert w.stats.spooled > 0
            proxy.default = PASS
            w.write_many([f"logs,test={unique_tag} value={i}i {BASE + i * 10**6}"
                          for i in range(3000, 3100)])
            with anyio.fail_after(20):
                while w.stats.written < 3100 or "replay finished" not in caplog.text:
                    await anyio.sleep(0.05)
    texts = [r.getMessage() for r in caplog.records]
    for phrase in STORY:
        assert sum(phrase in t for t in texts) == 1, (phrase, texts)
    order = [next(i for i, t in enumerate(texts) if phrase in t) for phrase in STORY]
    assert order[0] < order[2] and order[1] < order[3] and order[4] < order[5], texts
