"""Rolling restart behind a real haproxy: two app processes, steady traffic, each process in
turn gets SIGTERM and is restarted. The short version of ``benchmarks/rolling_restart.py``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from benchmarks.rolling_restart import SERVERS, rolling_restart

RATE = 150.0  # requests per second: steady, and gentle on a shared 2-core machine


@pytest.mark.timeout(240)
@pytest.mark.parametrize("server", SERVERS)
def test_a_rolling_restart_with_a_drain_fails_no_request_and_without_one_it_does(
        server: str, haproxy: Callable[[dict[str, int]], Any]) -> None:
    drained = rolling_restart(server, drain=1.0, min_requests=400, rate=RATE,
                              balancer_factory=haproxy)
    assert drained.restarts >= 2
    assert drained.requests >= 400
    assert drained.failed == 0, drained.failures
    assert drained.exit_codes == [0] * drained.restarts  # one SIGTERM: never 143
    assert drained.reports_ok

    abrupt = rolling_restart(server, drain=0.0, min_requests=200, rate=RATE,
                             balancer_factory=haproxy)
    assert abrupt.failed > 0, "without a drain the balancer still sends to a closed port"
    assert abrupt.exit_codes == [0] * abrupt.restarts
