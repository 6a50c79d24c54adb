"""The phase of one service's runtime: the sequence each path goes through, and the public
``Service.state`` users see at each step (unchanged by the phase machine: it is set by it).

Each test records every phase change (``ServiceRuntime._enter``, the one place a phase
changes) of a real supervisor running real services, on both backends.
"""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest

from lifecycle import ConfigError, Fallback, RestartPolicy, Service, StartupError, Supervisor
from lifecycle._phase import NEXT, Phase
from lifecycle._runtime import ServiceRuntime
from lifecycle._stoptoken import Stop, StopToken
from lifecycle.stacks import service_owners

Step = tuple[str, str, str]  # (phase, the active service's name, its public state)


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> list[Step]:
    """Every phase change of every runtime, with the public state it left behind (each one
    is checked against the transition table by ``_enter`` itself)."""
    seen: list[Step] = []
    enter = ServiceRuntime._enter

    def recording(rt: ServiceRuntime, phase: Phase, **kw: Any) -> None:
        enter(rt, phase, **kw)
        seen.append((phase.name, rt.active.name, rt.active.state.value))

    monkeypatch.setattr(ServiceRuntime, "_enter", recording)
    return seen


class Restartable(Service):
    """Its reload fails, and ``on_reload_failure="restart"`` restarts it; its second start
    fails when asked to."""

    def __init__(self, *, fail_second_start: bool = False, **kw: Any) -> None:
        super().__init__(on_reload_failure="restart", **kw)
        self.starts = 0
        self.fail_second_start = fail_second_start

    async def start(self) -> None:
        self.starts += 1
        if self.starts == 2 and self.fail_second_start:
            raise ConnectionRefusedError("the second start is refused")

    async def reload(self) -> None:
        raise ValueError("bad setting")


async def reload_and_wait(sup: Supervisor) -> None:
    finished = anyio.Event()
    sup.subscribe(lambda e: finished.set() if e.kind == "ReloadFinished" else None)
    sup.request_reload("test")
    with anyio.fail_after(10):
        await finished.wait()


@pytest.mark.anyio
async def test_a_start_then_a_close_go_starting_running_stopping_stopped(steps: list[Step]) -> None:
    svc = Service(name="plain")
    async with Supervisor([svc], leak_check=False, log_report=False):
        assert svc.state.value == "running"
    assert steps == [("STARTING", "plain", "starting"), ("RUNNING", "plain", "running"),
                     ("STOPPING", "plain", "stopping"), ("STOPPED", "plain", "stopped")]


@pytest.mark.anyio
async def test_a_failed_start_shows_failed_and_ends_in_start_failed_without_a_close(
        steps: list[Step]) -> None:
    class Broken(Service):
        async def start(self) -> None:
            raise OSError("refused")

    svc = Broken(name="broken")
    with pytest.raises(StartupError):
        async with Supervisor([svc], leak_check=False, log_report=False):
            pass
    assert steps == [("STARTING", "broken", "starting"), ("STARTING", "broken", "failed"),
                     ("START_FAILED", "broken", "failed")]
    assert svc.state.value == "failed"


@pytest.mark.anyio
async def test_a_restart_goes_through_stopped_for_restart_and_restarting(steps: list[Step]) -> None:
    svc = Restartable(name="settings")
    async with Supervisor([svc], leak_check=False, log_report=False) as sup:
        await reload_and_wait(sup)
        assert svc.starts == 2 and svc.state.value == "running"
    assert steps == [
        ("STARTING", "settings", "starting"), ("RUNNING", "settings", "running"),
        ("STOPPING", "settings", "stopping"), ("STOPPED_FOR_RESTART", "settings", "stopped"),
        ("RESTARTING", "settings", "starting"), ("RUNNING", "settings", "running"),
        ("STOPPING", "settings", "stopping"), ("STOPPED", "settings", "stopped")]


@pytest.mark.anyio
async def test_a_failed_restart_stays_failed_through_the_close_which_skips_its_stages(
        steps: list[Step]) -> None:
    svc = Restartable(name="settings", fail_second_start=True)
    sup = Supervisor([svc], leak_check=False, log_report=False)
    async with sup:
        await reload_and_wait(sup)
    assert steps == [
        ("STARTING", "settings", "starting"), ("RUNNING", "settings", "running"),
        ("STOPPING", "settings", "stopping"), ("STOPPED_FOR_RESTART", "settings", "stopped"),
        ("RESTARTING", "settings", "starting"), ("RESTARTING", "settings", "failed"),
        ("STOPPED_FOR_RESTART", "settings", "failed"),
        ("STOPPING", "settings", "failed"), ("STOPPED", "settings", "failed")]
    assert sup.report.shutdown["settings"]["stop"].error == (
        "already stopped for a restart that did not finish")


@pytest.mark.anyio
async def test_a_fallback_tries_each_candidate_and_only_the_winner_runs(steps: list[Step]) -> None:
    class Down(Service):
        async def start(self) -> None:
            raise ConnectionRefusedError("down")

    chain = Fallback("db", Down(name="primary"), Service(name="replica"))
    async with Supervisor([chain], leak_check=False, log_report=False) as sup:
        assert sup["db"].name == "replica"
    assert steps == [
        ("STARTING", "primary", "starting"), ("STARTING", "primary", "failed"),
        ("STARTING", "replica", "starting"), ("RUNNING", "replica", "running"),
        ("STOPPING", "replica", "stopping"), ("STOPPED", "replica", "stopped")]
    assert chain.state.value == "new"  # the chain itself is no attempt: only its candidates


@pytest.mark.anyio
async def test_a_service_given_up_stays_failed_through_its_close(steps: list[Step]) -> None:
    crashed = anyio.Event()

    class Crashing(Service):
        async def run(self) -> None:
            crashed.set()
            raise RuntimeError("crash")

    svc = Crashing(name="crashing", optional=True, restart=RestartPolicy(on="never"))
    async with Supervisor([svc], leak_check=False, log_report=False):
        with anyio.fail_after(10):
            await crashed.wait()
            while svc.state.value != "failed":
                await anyio.lowlevel.checkpoint()  # the give-up follows in the crashed task
    assert steps == [("STARTING", "crashing", "starting"), ("RUNNING", "crashing", "running"),
                     ("RUNNING", "crashing", "failed"),
                     ("STOPPING", "crashing", "failed"), ("STOPPED", "crashing", "failed")]


def test_a_change_the_table_does_not_list_is_refused() -> None:
    rt = ServiceRuntime(Service(name="plain"), Supervisor([], leak_check=False))
    with pytest.raises(AssertionError, match="plain"):
        rt._enter(Phase.RUNNING)  # NEW -> RUNNING skips the start
    assert rt.phase is Phase.NEW


def test_every_phase_is_reachable_and_every_final_phase_has_no_way_out() -> None:
    reachable = {Phase.NEW}
    for _ in Phase:
        reachable |= {nxt for phase in reachable for nxt in NEXT[phase]}
    assert reachable == set(Phase)
    assert {p for p in Phase if not NEXT[p]} == {Phase.START_FAILED, Phase.STOPPED}


@pytest.mark.anyio
async def test_a_stop_token_set_for_a_restart_then_for_good_stays_for_good() -> None:
    token = StopToken()
    assert not token.is_set() and token.why is None
    with anyio.move_on_after(0.01) as scope:
        await token.wait()
    assert scope.cancelled_caught
    token.set(Stop.RESTART)
    assert token.is_set() and token.why is Stop.RESTART
    token.set(Stop.FOR_GOOD)
    token.set(Stop.RESTART)
    assert token.why is Stop.FOR_GOOD
    with anyio.fail_after(1):
        await token.wait()


def test_members_are_the_service_itself_or_a_chains_candidates() -> None:
    plain, first, second = Service(name="plain"), Service(name="a"), Service(name="b")
    chain = Fallback("db", first, second)
    assert plain.members() == (plain,)
    assert chain.members() == (first, second)
    assert service_owners([plain, chain]) == {id(plain): "plain", id(chain): "db",
                                              id(first): "db", id(second): "db"}


def test_a_service_that_uses_the_name_members_for_something_else_is_a_config_error() -> None:
    class Room(Service):
        def __init__(self) -> None:
            super().__init__(name="room")
            self.members = ["ann", "bob"]  # type: ignore[method-assign,assignment]  # the point

    with pytest.raises(ConfigError, match=r"'room': 'members' is Service\.members"):
        Supervisor([Room()])
