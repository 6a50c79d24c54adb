"""Start: dependency order, concurrency, deadlines, rollback, optional services, Fallback."""

from __future__ import annotations

import json

import anyio
import pytest

from lifecycle import Fallback, Service, ServiceState, StartupError, Supervisor

pytestmark = pytest.mark.anyio


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, float]] = []

    def add(self, what: str, name: str) -> None:
        self.events.append((what, name, anyio.current_time()))

    def names(self, what: str) -> list[str]:
        return [n for w, n, _ in self.events if w == what]

    def at(self, what: str, name: str) -> float:
        return next(t for w, n, t in self.events if w == what and n == name)


class Slow(Service):
    def __init__(self, rec: Recorder, delay: float = 0.0, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.rec = rec
        self.delay = delay

    async def start(self) -> None:
        self.rec.add("start", self.name)
        await anyio.sleep(self.delay)
        self.rec.add("started", self.name)

    async def stop(self) -> None:
        self.rec.add("stop", self.name)


class Hang(Service):
    async def start(self) -> None:
        await anyio.sleep_forever()


class Boom(Service):
    async def start(self) -> None:
        raise OSError("disk on fire")


async def test_dependencies_start_first_and_stop_last() -> None:
    rec = Recorder()
    sup = Supervisor([Slow(rec, name="api", depends_on=("db", "cache")),
                      Slow(rec, 0.05, name="db"), Slow(rec, 0.02, name="cache"),
                      Slow(rec, name="worker", depends_on=("api",))], leak_check=False)
    async with sup:
        assert rec.at("start", "api") >= max(rec.at("started", "db"), rec.at("started", "cache"))
        assert rec.at("start", "worker") >= rec.at("started", "api")
    stops = rec.names("stop")
    assert stops.index("worker") < stops.index("api") < min(stops.index("db"), stops.index("cache"))
    assert sup.report.ok, sup.report.format()


async def test_a_level_of_slow_starts_overlaps() -> None:
    rec = Recorder()
    services = [Slow(rec, 0.2, name=f"s{i}") for i in range(10)]
    began = anyio.current_time()
    async with Supervisor(services, leak_check=False) as sup:
        elapsed = anyio.current_time() - began
    assert elapsed < 1.0, f"10 starts of 0.2 s took {elapsed:.2f} s: not concurrent"
    assert all(r.outcome == "ok" for r in sup.report.startup.values())


async def test_start_timeout_fails_and_rolls_back_in_reverse() -> None:
    rec = Recorder()
    services = [Slow(rec, name="a"), Slow(rec, name="b", depends_on=("a",)),
                Hang(name="c", depends_on=("b",), start_timeout=0.3),
                Slow(rec, name="d", depends_on=("c",))]
    began = anyio.current_time()
    with pytest.raises(StartupError) as info:
        async with Supervisor(services, leak_check=False):
            pytest.fail("the body must not run when startup failed")
    assert anyio.current_time() - began < 3.0
    report = info.value.report
    assert report.startup["c"].outcome == "timeout"
    assert report.startup["c"].elapsed >= 0.3
    assert "did not finish within 0.3s" in (report.startup["c"].error or "")
    assert "sleep_forever" in (report.startup["c"].stack or "")
    assert report.startup["d"].outcome == "skipped"
    assert rec.names("stop") == ["b", "a"]
    assert report.exit_code == 1
    assert "c" in str(info.value)
    json.dumps(report.to_dict())


async def test_failure_cancels_siblings_still_starting() -> None:
    rec = Recorder()
    services = [Slow(rec, 30.0, name="slow"), Boom(name="boom")]
    began = anyio.current_time()
    with pytest.raises(StartupError) as info:
        async with Supervisor(services, leak_check=False):
            pass
    assert anyio.current_time() - began < 3.0
    assert info.value.report.startup["slow"].outcome == "cancelled"
    assert info.value.report.startup["boom"].error == "OSError: disk on fire"


async def test_optional_failure_degrades_and_skips_dependents() -> None:
    rec = Recorder()
    services = [Boom(name="extra", optional=True), Slow(rec, name="uses_extra", depends_on=("extra",)),
                Slow(rec, name="core")]
    async with Supervisor(services, leak_check=False) as sup:
        assert sup["core"].state == ServiceState.RUNNING
        with pytest.raises(LookupError, match="extra"):
            sup["extra"]
        assert sup.report.startup["uses_extra"].outcome == "skipped"
    assert sup.report.exit_code == 0
    assert not sup.report.ok  # degraded is not clean


async def test_fallback_uses_first_candidate_that_starts() -> None:
    rec = Recorder()
    primary = Hang(name="primary", start_timeout=0.2)
    broken = Boom(name="broken")
    backup = Slow(rec, name="backup")

    class User(Service):
        depends_on = ("db",)

        async def start(self) -> None:
            assert self.dependency("db") is backup

    async with Supervisor([Fallback("db", primary, broken, backup), User()], leak_check=False) as sup:
        assert sup["db"] is backup
    start = sup.report.startup["db"]
    assert start.outcome == "ok" and start.winner == "backup"
    assert [(a.candidate, a.outcome) for a in start.attempts] == [
        ("primary", "timeout"), ("broken", "error"), ("backup", "ok")]
    assert rec.names("stop") == ["backup"]


async def test_fallback_all_failing_is_a_start_failure() -> None:
    with pytest.raises(StartupError) as info:
        async with Supervisor([Fallback("db", Boom(name="x"), Boom(name="y"))], leak_check=False):
            pass
    assert [a.outcome for a in info.value.report.startup["db"].attempts] == ["error", "error"]


async def test_dependency_outside_depends_on_is_an_error() -> None:
    class Nosy(Service):
        async def start(self) -> None:
            self.dependency("other")

    with pytest.raises(StartupError) as info:
        async with Supervisor([Nosy(), Service(name="other")], leak_check=False):
            pass
    assert "not in its depends_on" in (info.value.report.startup["nosy"].error or "")


async def test_secrets_never_reach_the_report() -> None:
    class Leaky(Service):
        def secrets(self) -> list[str]:
            return ["hunter2"]

        async def start(self) -> None:
            raise ConnectionError("login failed for postgresql://app:hunter2@db/x")

    with pytest.raises(StartupError) as info:
        async with Supervisor([Fallback("db", Leaky(), Boom())], leak_check=False):
            pass
    report = info.value.report
    assert "hunter2" not in json.dumps(report.to_dict())
    assert "hunter2" not in report.format()
    assert "app:***@db" in report.format()
