"""Reload: SIGHUP to a real process, ``request_reload()`` in process, systemd notify-reload."""

from __future__ import annotations

import json
import logging
import signal
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from lifecycle import ConfigError, Service, Supervisor
from lifecycle.events import Event
from lifecycle.trace import chrome_trace
from tests.test_signals import App
from tests.test_systemd import FakeSystemd, collect, short_dir  # noqa: F401 -- a fixture

APP = Path(__file__).parent / "apps" / "reload_app.py"


class Reloadable(Service):
    reload_timeout = 0.3

    def __init__(self, journal: list[str], mode: str = "ok", **kw: Any) -> None:
        super().__init__(**kw)
        self.journal = journal
        self.mode = mode
        self.starts = 0

    async def start(self) -> None:
        self.starts += 1

    async def reload(self) -> None:
        self.journal.append(self.name)
        if self.mode == "hang":
            await anyio.sleep_forever()
        if self.mode == "fail":
            raise ValueError(f"{self.name}: bad setting 'port = eighty'")


class Plain(Service):
    pass


async def reload_once(sup: Supervisor, events: list[Event]) -> None:
    finished = anyio.Event()
    sup.subscribe(lambda e: finished.set() if e.kind == "ReloadFinished" else None)
    sup.subscribe(events.append)
    sup.request_reload("test")
    with anyio.fail_after(10):
        await finished.wait()


@pytest.mark.anyio
async def test_request_reload_reloads_the_services_with_a_hook_in_dependency_order() -> None:
    journal: list[str] = []
    events: list[Event] = []
    services = [Reloadable(journal, name="api", depends_on="db"), Plain(name="cache"),
                Reloadable(journal, name="db", depends_on="config"), Reloadable(journal, name="config")]
    async with Supervisor(services, leak_check=False) as sup:
        await reload_once(sup, events)
        assert sup.ready
    assert journal == ["config", "db", "api"]
    assert [(r.service, r.outcome, r.reason) for r in sup.report.reloads] == [
        ("config", "ok", "test"), ("db", "ok", "test"), ("api", "ok", "test")]
    kinds = [(e.kind, e.service) for e in events]
    assert kinds[:5] == [("ReloadRequested", None), ("ServiceReloaded", "config"),
                     ("ServiceReloaded", "db"), ("ServiceReloaded", "api"), ("ReloadFinished", None)]
    assert sup.report.ok, sup.report.format()


@pytest.mark.anyio
async def test_a_hanging_reload_is_cut_at_its_deadline_and_the_app_runs_on(
        caplog: pytest.LogCaptureFixture) -> None:
    journal: list[str] = []
    events: list[Event] = []
    hanging = Reloadable(journal, "hang", name="settings")
    after = Reloadable(journal, name="api", depends_on="settings")
    began = time.monotonic()
    async with Supervisor([hanging, after], leak_check=False) as sup:
        with caplog.at_level(logging.INFO, logger="lifecycle.events"):
            await reload_once(sup, events)
        assert sup.ready and not sup.shutdown_requested
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "lifecycle.events"]
    assert (logging.INFO, "reload requested (test): settings, api") in lines
    assert any(level == logging.WARNING and text.startswith("settings: reload timeout in ")
               for level, text in lines), lines
    assert time.monotonic() - began < 5.0
    cut, ok = sup.report.reloads
    assert (cut.service, cut.outcome, cut.deadline) == ("settings", "timeout", 0.3)
    assert 0.25 < cut.elapsed < 3.0 and "sleep_forever" in (cut.stack or "")
    assert ok.outcome == "ok"  # the next service still reloads
    assert next(e for e in events if e.kind == "ReloadFinished").failed == ("settings",)  # type: ignore[attr-defined]
    assert sup.report.failures[0].where == "reload"
    assert "settings.reload: timeout" in sup.report.format()
    slices = [e for e in chrome_trace(sup.report)["traceEvents"] if e.get("cat") == "reload"]
    assert [(e["name"], e["args"]["deadline"]) for e in slices] == [
        ("reload (timeout)", 0.3), ("reload", 0.3)]
    assert sup.report.exit_code == 0


@pytest.mark.anyio
async def test_a_failed_reload_escalates_as_configured() -> None:
    journal: list[str] = []
    failing = Reloadable(journal, "fail", name="settings", on_reload_failure="shutdown")
    sup = Supervisor([failing], leak_check=False)
    sup.subscribe(lambda e: sup.request_reload() if e.kind == "AllStarted" else None)
    with anyio.fail_after(10):
        report = await sup.serve(handle_signals=False)
    assert report.exit_code == 3 and report.reason == "reload of 'settings' failed"
    assert "bad setting" in (report.reloads[0].error or "")

    restarting = Reloadable(journal, "fail", name="settings", on_reload_failure="restart")
    events: list[Event] = []
    async with Supervisor([restarting], leak_check=False) as sup:
        await reload_once(sup, events)
        assert restarting.starts == 2 and sup.ready


@pytest.mark.anyio
async def test_a_reload_requested_during_startup_runs_once_started() -> None:
    journal: list[str] = []

    class Slow(Reloadable):
        async def start(self) -> None:
            self.supervisor.request_reload("early")
            await anyio.sleep(0.05)

    done = anyio.Event()
    sup = Supervisor([Slow(journal, name="slow")], leak_check=False)
    sup.subscribe(lambda e: done.set() if e.kind == "ReloadFinished" else None)
    async with sup:
        with anyio.fail_after(10):
            await done.wait()
    assert journal == ["slow"] and sup.report.reloads[0].reason == "early"


def test_reload_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="'x': reload_timeout"):
        Supervisor([Reloadable([], name="x", reload_timeout=0)])
    with pytest.raises(ConfigError, match="'x': on_reload_failure"):
        Supervisor([Reloadable([], name="x", on_reload_failure="panic")])

    class Sync(Service):
        def reload(self) -> None:  # type: ignore[override]
            pass

    with pytest.raises(ConfigError, match="reload\\(\\) must be an async def"):
        Supervisor([Sync()])


# ----- a real process, a real signal ------------------------------------------------------
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sighup_reloads_a_service_that_rereads_its_config_file(backend: str, tmp_path: Path) -> None:
    config = tmp_path / "app.conf"
    config.write_text("hello\n")
    app = App(str(config), backend, script=APP)
    app.wait_for("READY")
    assert "LOADED hello" in app.seen
    config.write_text("bonjour\n")
    app.proc.send_signal(signal.SIGHUP)
    app.wait_for("LOADED bonjour")
    app.wait_for("RELOADED failed=")
    config.write_text("hang\n")
    app.proc.send_signal(signal.SIGHUP)
    app.wait_for("RELOADED failed=settings")  # cut at its 0.5 s deadline; the app runs on
    app.proc.send_signal(signal.SIGTERM)
    code, report, _ = app.finish(timeout=15)
    assert code == 0, report
    assert [(r["outcome"], r["reason"]) for r in report["reloads"]] == [
        ("ok", "signal SIGHUP"), ("timeout", "signal SIGHUP")]
    assert report["reloads"][1]["deadline"] == 0.5 and report["reloads"][1]["elapsed"] < 5.0


def test_notify_reload_sends_reloading_with_monotonic_usec_then_ready(
        short_dir: Path, tmp_path: Path) -> None:  # noqa: F811 -- the fixture
    config = tmp_path / "app.conf"
    config.write_text("hello\n")
    fake = FakeSystemd(str(short_dir / "notify"))
    try:
        app = App(str(config), "asyncio", script=APP, env={"NOTIFY_SOCKET": fake.address})
        collect(fake, app.proc, "READY=1", 30)
        config.write_text("bonjour\n")
        sent_at = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        app.proc.send_signal(signal.SIGHUP)
        collect(fake, app.proc, "RELOADING=1", 30)
        deadline = time.monotonic() + 30
        while fake.fields().count("READY=1") < 2 and time.monotonic() < deadline:
            fake.receive_blocking(0.5)  # each datagram as it arrives, at most 0.5 s apart
        app.proc.send_signal(signal.SIGTERM)
        code, report, _ = app.finish(timeout=15)
    finally:
        fake.close()
    assert code == 0, report
    fields = fake.fields()
    reloading = fields.index("RELOADING=1")
    usec = fields[reloading + 1]
    assert usec.startswith("MONOTONIC_USEC=")
    assert 0 <= int(usec.split("=")[1]) - sent_at < 30_000_000  # after the signal, same clock
    assert fields.index("READY=1") < reloading < len(fields) - 1 - fields[::-1].index("READY=1")
    assert fields[reloading + 2] == "STATUS=reloading: settings"
    assert fields[reloading + 3] == "EXTEND_TIMEOUT_USEC=750000"  # its 0.5 s deadline + 0.25 s
    assert json.dumps(report["reloads"][0]["outcome"]) == '"ok"'


@pytest.mark.anyio
async def test_request_reload_from_another_thread() -> None:
    journal: list[str] = []
    done = anyio.Event()
    sup = Supervisor([Reloadable(journal, name="settings")], leak_check=False)
    sup.subscribe(lambda e: done.set() if e.kind == "ReloadFinished" else None)
    async with sup:
        await anyio.to_thread.run_sync(sup.request_reload, "from a thread")
        with anyio.fail_after(10):
            await done.wait()
    assert journal == ["settings"] and sup.report.reloads[0].reason == "from a thread"
