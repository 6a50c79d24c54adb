"""InfluxWriter pieces that need no server: policies, buffer caps, config, secrets."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from lifecycle import ConfigError, StartupError, Supervisor
from lifecycle.adapters.influx import InfluxWriter, WriterClosedError
from lifecycle.adapters.influx._policy import (
    BatchSizer,
    CircuitBreaker,
    RetryPolicy,
    parse_retry_after,
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_retry_policy_backoff_jitter_cap_and_retry_after() -> None:
    policy = RetryPolicy(max_attempts=5, base=0.5, cap=4.0, jitter=0.5)
    assert [policy.delay(a, rand=lambda: 0.0) for a in (1, 2, 3, 4, 5)] == [0.5, 1, 2, 4, 4]
    assert policy.delay(3, rand=lambda: 1.0) == 1.0
    assert policy.delay(1, retry_after=7.0) == 7.0
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("soon") is None


def test_breaker_opens_probes_and_backs_off() -> None:
    now = [0.0]
    breaker = CircuitBreaker(threshold=2, reset=1.0, reset_max=3.0, clock=lambda: now[0])
    breaker.failure()
    assert breaker.state == "closed"
    breaker.failure()
    assert (breaker.state, breaker.allow(), breaker.wait()) == ("open", False, 1.0)
    now[0] = 1.0
    assert (breaker.state, breaker.allow()) == ("half_open", True)
    breaker.failure()  # failed probe: open twice as long
    assert breaker.wait() == 2.0
    now[0] = 3.0
    breaker.failure()
    assert breaker.wait() == 3.0  # capped
    now[0] = 6.0
    breaker.success()
    assert (breaker.state, breaker.opened) == ("closed", 3)


def test_batch_sizer_halves_and_grows() -> None:
    sizer = BatchSizer(5000)
    for _ in range(10):
        sizer.shrink()
    assert sizer.current == 156
    sizer.grow()
    assert sizer.current == 312
    for _ in range(10):
        sizer.grow()
    assert sizer.current == 5000


def make(tmp_path: Path, **kw: object) -> InfluxWriter:
    kw = {"flush_timeout": 3.0, "spool_timeout": 2.0, "close_timeout": 2.0, **kw}
    return InfluxWriter(None, spool_path=tmp_path / "spool", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_drop_policies_count_what_they_drop(tmp_path: Path, policy: str) -> None:
    writer = make(tmp_path, when_full=policy, max_buffer_points=100, batch_size=10)
    accepted = writer.write_many([f"m v={i}i {i}" for i in range(250)])
    stats = writer.stats
    assert (stats.accepted, stats.buffered, stats.dropped) == (250, 100, 150)
    assert stats.dropped_reasons == {"buffer_full": 150}
    assert stats.balanced
    kept = list(writer._buf)
    if policy == "drop_oldest":
        assert accepted == 250
        assert kept[0] == b"m v=150i 150"
    else:
        assert accepted == 100
        assert kept[-1] == b"m v=99i 99"


def test_byte_cap_spills_the_oldest_to_the_spool(tmp_path: Path) -> None:
    writer = make(tmp_path, max_buffer_bytes=2000, batch_size=10, max_buffer_points=1000)
    writer.write_many([f"m v={i}i {i}" for i in range(500)])
    stats = writer.stats
    assert writer._buf.bytes <= 2000
    assert stats.dropped == 0
    assert stats.in_spool + stats.buffered == 500
    assert stats.balanced
    writer.spool_store.close()


def test_config_and_from_env(tmp_path: Path) -> None:
    env = {"INFLUXDB_URL": "http://u:pw@127.0.0.1:1", "INFLUXDB_TOKEN": "tok-123",
           "INFLUXDB_ORG": "o", "INFLUXDB_BUCKET": "b", "INFLUXDB_SPOOL_DIR": str(tmp_path)}
    writer = InfluxWriter.from_env(environ=env)
    assert (writer.name, writer.url, writer.org, writer.bucket) == ("influx_writer", env["INFLUXDB_URL"],
                                                                    "o", "b")
    assert writer.spool_store.directory == tmp_path
    assert list(writer.secrets()) == ["tok-123"]
    text = repr(writer)
    assert "tok-123" not in text
    assert "pw" not in text
    assert InfluxWriter.from_env(environ={}).spool_only
    with pytest.raises(ConfigError, match="bucket"):
        InfluxWriter.from_env(environ={"INFLUXDB_URL": "http://x"})
    with pytest.raises(ConfigError, match="when_full"):
        InfluxWriter(None, when_full="block")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="jitter"):
        InfluxWriter(None, retry_jitter=2.0)
    with pytest.raises(ConfigError, match="synchronous"):
        InfluxWriter(None, spool_fsync="sometimes")  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_spool_only_mode_and_refusal_after_stop(tmp_path: Path) -> None:
    writer = make(tmp_path, flush_interval=0.01)
    async with Supervisor([writer], shutdown_timeout=10.0):
        writer.write_many([f"m v={i}i {i}" for i in range(1000)])
    with pytest.raises(WriterClosedError, match="refused"):
        writer.write("m v=1i 1")
    stats = writer.stats
    assert (stats.accepted, stats.in_spool, stats.rejected, stats.written) == (1000, 1000, 1, 0)
    assert stats.balanced
    assert writer.report_details()["mode"] == "spool-only"


def test_online_mode_refuses_trio_and_spool_only_mode_runs_on_it(tmp_path: Path) -> None:
    async def main(url: str | None) -> InfluxWriter:
        writer = make(tmp_path / str(bool(url)), flush_interval=0.01)
        writer.url = url
        writer.bucket = "b"
        async with Supervisor([writer], shutdown_timeout=10.0):
            writer.write("m v=1i 1")
        return writer

    assert anyio.run(main, None, backend="trio").stats.in_spool == 1
    with pytest.raises(StartupError) as failed:
        anyio.run(main, "http://127.0.0.1:9", backend="trio")
    assert "needs asyncio" in failed.value.report.format()


@pytest.mark.anyio
async def test_full_spool_is_counted_not_silent(tmp_path: Path) -> None:
    writer = make(tmp_path, flush_interval=0.01, spool_max_bytes=20_000, batch_size=100)
    async with Supervisor([writer], shutdown_timeout=10.0) as sup:
        for k in range(10):
            writer.write_many([f"m v={i}i {i}" for i in range(k * 200, k * 200 + 200)])
            await anyio.sleep(0.02)
    stats = writer.stats
    assert stats.dropped > 0
    assert set(stats.dropped_reasons) == {"spool_full"}
    assert stats.in_spool + stats.dropped == 2000
    assert stats.balanced
    assert sup.report.details["influx_writer"]["spool_state"] == "closed"
