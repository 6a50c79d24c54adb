"""The systemd notify protocol against a fake systemd: a real unix datagram socket."""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from lifecycle import Service, Stage, Supervisor
from lifecycle.events import HealthAlert, HealthRestored, ServiceRecovering, ServiceStarted
from lifecycle.systemd import Notifier, watchdog_interval

APP = Path(__file__).parent / "apps" / "notify_app.py"
ROOT = Path(__file__).parent.parent


class FakeSystemd:
    """The receiving end of ``NOTIFY_SOCKET``: records every datagram with its arrival time."""

    def __init__(self, address: str) -> None:
        self.address = address  # as written in NOTIFY_SOCKET
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.messages: list[tuple[float, str]] = []

    def drain(self) -> list[str]:
        """Read whatever has arrived, without waiting."""
        self.sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                self._keep(self.sock.recv(4096))
        return self.fields()

    async def receive(self) -> list[str]:
        await anyio.wait_readable(self.sock)
        return self._keep(self.sock.recv(4096))

    def receive_blocking(self, timeout: float) -> list[str] | None:
        self.sock.setblocking(True)
        self.sock.settimeout(timeout)
        try:
            return self._keep(self.sock.recv(4096))
        except TimeoutError:
            return None

    def _keep(self, data: bytes) -> list[str]:
        fields = data.decode().split("\n")
        now = time.monotonic()
        self.messages += [(now, f) for f in fields]
        return fields

    def fields(self) -> list[str]:
        return [f for _, f in self.messages]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """Unix socket paths are limited to ~107 bytes: pytest's tmp_path can be too long."""
    path = Path(tempfile.mkdtemp(prefix="lc-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=["path", "abstract"])
def systemd(request: pytest.FixtureRequest, short_dir: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSystemd]:
    address = (str(short_dir / "notify") if request.param == "path"
               else f"@lifecycle-test-{uuid.uuid4().hex}")
    fake = FakeSystemd(address)
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield fake
    fake.close()


class Db(Service):
    async def start(self) -> None:
        await anyio.sleep(0.01)


class Api(Service):
    depends_on = ("db",)


async def serve_until(sup: Supervisor, fake: FakeSystemd, field: str) -> None:
    """Serve ``sup`` and request shutdown once ``field`` arrived at the fake systemd."""
    async with anyio.create_task_group() as tg:
        async def watch() -> None:
            while field not in await fake.receive():
                pass
            sup.request_shutdown("test done")

        tg.start_soon(watch)
        with anyio.fail_after(20):
            await sup.serve(handle_signals=False)
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_messages_arrive_in_order(systemd: FakeSystemd) -> None:
    sup = Supervisor([Db(), Api()], shutdown_timeout=5.0, log_report=False)
    await serve_until(sup, systemd, "READY=1")
    fields = systemd.drain()
    assert sup.report.exit_code == 0
    assert fields[0] == "STATUS=starting 2 services"
    ready, stopping = fields.index("READY=1"), fields.index("STOPPING=1")
    assert fields.index("STATUS=started db; 1/2 running") < fields.index(
        "STATUS=started api; 2/2 running") < ready < stopping
    assert fields[stopping + 1] == "STATUS=stopping: test done"
    assert fields.index("STATUS=stopping: api stopped; 1/2 services stopped") < fields.index(
        "STATUS=stopping: db stopped; 2/2 services stopped")
    assert fields[-1] == "STATUS=stopped (exit code 0)"
    assert fields.count("READY=1") == 1 and fields.count("STOPPING=1") == 1
    assert "WATCHDOG=1" not in fields  # no WATCHDOG_USEC: no pings


@pytest.mark.anyio
async def test_a_failed_start_never_says_ready(systemd: FakeSystemd) -> None:
    class Broken(Service):
        async def start(self) -> None:
            raise OSError("disk on fire")

    sup = Supervisor([Broken(), Api(depends_on=("broken",))], shutdown_timeout=5.0,
                     log_report=False)
    with anyio.fail_after(20):
        report = await sup.serve(handle_signals=False)
    fields = systemd.drain()
    assert report.exit_code == 1
    assert "READY=1" not in fields
    assert "STATUS=start of broken error: OSError: disk on fire" in fields
    assert "STOPPING=1" in fields
    assert fields[-1] == "STATUS=stopped (exit code 1)"


@pytest.mark.anyio
async def test_watchdog_pings_from_the_event_loop(systemd: FakeSystemd,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "40000")  # every 20 ms
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    sup = Supervisor([Db(), Api()], shutdown_timeout=5.0, log_report=False)
    async with anyio.create_task_group() as tg:
        async def watch() -> None:
            pings = 0
            while pings < 5:
                pings += (await systemd.receive()).count("WATCHDOG=1")
            sup.request_shutdown("enough pings")

        tg.start_soon(watch)
        with anyio.fail_after(20):
            await sup.serve(handle_signals=False)
    fields = systemd.drain()
    assert fields.count("WATCHDOG=1") >= 5
    assert fields.index("WATCHDOG=1") < fields.index("READY=1")  # pings from the very start


def test_watchdog_settings_from_the_environment() -> None:
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, pid=42) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, pid=43) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert Notifier.from_env({}) is None
    assert Notifier.from_env({"NOTIFY_SOCKET": "vsock:2:1234"}) is None  # not supported
    notifier = Notifier.from_env({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "2000000"})
    assert notifier is not None and notifier.watchdog == 1.0


@pytest.mark.anyio
async def test_watchdog_pid_of_another_process_means_no_pings(
        systemd: FakeSystemd, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "20000")  # would be every 10 ms
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    sup = Supervisor([Db(), Api()], shutdown_timeout=5.0, log_report=False)
    async with anyio.create_task_group() as tg:
        async def watch() -> None:
            while "READY=1" not in await systemd.receive():
                pass
            await anyio.sleep(0.3)  # an observation window: ~30 pings would have come
            sup.request_shutdown("done")

        tg.start_soon(watch)
        with anyio.fail_after(20):
            await sup.serve(handle_signals=False)
    fields = systemd.drain()
    assert "READY=1" in fields and "STOPPING=1" in fields
    assert "WATCHDOG=1" not in fields


@pytest.mark.anyio
async def test_no_listener_is_logged_once_and_harmless(
        short_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(short_dir / "nobody-listens"))
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    sup = Supervisor([Db(), Api()], shutdown_timeout=5.0, log_report=False)
    sup.subscribe(lambda e: sup.request_shutdown("done") if e.kind == "AllStarted" else None)
    with caplog.at_level(logging.DEBUG, logger="lifecycle.systemd"), anyio.fail_after(20):
        report = await sup.serve(handle_signals=False)
    assert report.ok, report.format()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "nobody-listens" in warnings[0].getMessage()
    assert len([r for r in caplog.records if r.name == "lifecycle.systemd"]) > 3  # rest: debug


def test_health_incidents_show_in_the_status(short_dir: Path) -> None:
    fake = FakeSystemd(str(short_dir / "notify"))
    notifier = Notifier(fake.address)
    try:
        notifier.on_event(ServiceStarted("db"))
        notifier.on_event(HealthAlert("db", reason="SELECT 1 timed out", failures=3))
        notifier.on_event(ServiceRecovering("db", attempt=1, method="restart"))
        notifier.on_event(HealthRestored("db", recoveries=1))
        assert fake.drain() == ["STATUS=started db; 1/0 running", "STATUS=db unhealthy: SELECT 1 timed out",
                                "STATUS=recovering db by restart (attempt 1)",
                                "STATUS=running 1/0 services (db healthy again)"]
    finally:
        notifier.close()
        fake.close()


# ----- the app in a subprocess, as systemd runs it -------------------------------------------
def spawn(mode: str, backend: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(APP), mode, backend], cwd=ROOT, text=True,
                            env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def collect(fake: FakeSystemd, proc: subprocess.Popen[str], until: str, limit: float) -> None:
    deadline = time.monotonic() + limit
    while until not in fake.fields():
        if time.monotonic() > deadline:
            proc.kill()
            _, err = proc.communicate()
            raise AssertionError(f"no {until!r} within {limit}s: {fake.fields()}\n{err}")
        fake.receive_blocking(0.5)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_subprocess_sigterm_ready_then_stopping(backend: str, short_dir: Path) -> None:
    fake = FakeSystemd(str(short_dir / "notify"))
    try:
        proc = spawn("serve", backend, {"NOTIFY_SOCKET": fake.address})
        collect(fake, proc, "READY=1", 30)
        proc.send_signal(signal.SIGTERM)
        collect(fake, proc, "STATUS=stopped (exit code 0)", 30)
        assert proc.wait(30) == 0, proc.communicate()[1]
        fields = fake.fields()
        assert fields.index("READY=1") < fields.index("STOPPING=1")
        assert "STATUS=stopping: signal SIGTERM" in fields
    finally:
        fake.close()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_blocked_event_loop_stops_the_watchdog_pings(backend: str, short_dir: Path) -> None:
    fake = FakeSystemd(str(short_dir / "notify"))
    try:
        proc = spawn("block", backend, {"NOTIFY_SOCKET": fake.address,
                                        "WATCHDOG_USEC": "200000"})  # a ping every 0.1 s
        collect(fake, proc, "STATUS=stopped (exit code 0)", 40)
        assert proc.wait(30) == 0, proc.communicate()[1]
    finally:
        fake.close()
    fields = fake.fields()
    ready, stopping = fields.index("READY=1"), fields.index("STOPPING=1")
    pings = [at for at, f in fake.messages if f == "WATCHDOG=1"]
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    # While the loop is free the pings come every 0.1 s; the 2 s time.sleep() in the loop
    # silenced them, which is what makes systemd's WatchdogSec kill a wedged process.
    assert max(gaps) >= 1.5, gaps
    assert sorted(gaps)[len(gaps) // 2] < 0.5, gaps
    ping_fields = [i for i, f in enumerate(fields) if f == "WATCHDOG=1"]
    assert any(i > ready for i in ping_fields) and any(i < stopping for i in ping_fields)
    assert sum(1 for g in gaps if g >= 1.5) == 1


# ----- EXTEND_TIMEOUT_USEC and progress while starting and closing -----------------------------
def _extensions(fields: list[str]) -> list[float]:
    return [int(f.split("=")[1]) / 1e6 for f in fields if f.startswith("EXTEND_TIMEOUT_USEC=")]


@pytest.mark.anyio
async def test_a_slow_start_and_a_slow_close_extend_the_timeout_within_their_deadlines(
        systemd: FakeSystemd, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Notifier, "progress_interval", 0.1)

    class SlowDb(Service):
        start_timeout = 30.0

        async def start(self) -> None:
            await anyio.sleep(0.5)

    class Metrics(Service):
        depends_on = ("slow_db",)
        stop_stages = (Stage("flush", 5.0),)

        async def flush(self) -> None:
            await anyio.sleep(0.5)

    sup = Supervisor([SlowDb(), Metrics()], shutdown_timeout=8.0, log_report=False)
    await serve_until(sup, systemd, "READY=1")
    fields = systemd.drain()
    ready, stopping = fields.index("READY=1"), fields.index("STOPPING=1")
    starting, closing = fields[:ready], fields[stopping:]
    # the start of slow_db: extended to its own 30 s deadline (+ the 0.25 s grace), no further
    assert _extensions(starting)[0] == 30.25
    assert all(e <= 30.25 for e in _extensions(starting))
    progress = [f for f in starting if f.startswith("STATUS=starting: slow_db.start (")]
    assert progress and progress[-1].endswith(" s of 30 s)")
    # the close: the budget of 8 s plus the bounded overrun, and what is awaited
    assert _extensions(closing)[0] == 8.0 + 1.25
    assert all(e <= 9.25 for e in _extensions(closing))
    flush = [f for f in closing if f.startswith("STATUS=stopping: metrics.flush (")]
    assert flush and flush[-1].endswith(" s of 5 s)"), closing
    seconds = float(flush[-1].split("(")[1].split(" s")[0])
    assert 0.0 < seconds <= 0.6
    assert sup.report.ok, sup.report.format()
