"""What the constructor's shortcuts (checks remembered per class, shared default stages,
events stored without their __init__) must not change: the same errors, the same values."""

from __future__ import annotations

import pytest

from lifecycle import ConfigError, Service, Stage, Supervisor, every
from lifecycle.events import ServiceStarted, StageFinished
from lifecycle.outcome import Outcome
from lifecycle.records import StageRecord, StartRecord


class Ticking(Service):
    @every(60)
    async def tick(self) -> None: ...


def test_a_class_patched_with_a_sync_hook_after_a_supervisor_accepted_it_is_rejected() -> None:
    class Patched(Service):
        async def stop(self) -> None: ...

    Supervisor([Patched(name="first")])

    def stop(self: Service) -> None: ...

    Patched.stop = stop  # type: ignore[method-assign,assignment]
    with pytest.raises(ConfigError, match=r"service 'second': stop\(\) must be an async def"):
        Supervisor([Patched(name="second")])


def test_an_instance_that_shadows_a_loop_with_a_sync_function_is_rejected_after_its_class_passed() -> None:
    Supervisor([Ticking(name="fine")])
    shadowing = Ticking(name="shadowing")
    shadowing.tick = lambda: None  # type: ignore[method-assign]
    with pytest.raises(ConfigError, match=r"service 'shadowing': @every method tick\(\) must be"):
        Supervisor([shadowing])


def test_an_invalid_on_reload_failure_is_still_named() -> None:
    with pytest.raises(ConfigError, match="service 'a': on_reload_failure must be one of"):
        Supervisor([Ticking(name="a", on_reload_failure="explode")])


def test_services_with_the_same_default_stop_stage_get_equal_stages_fitted_to_the_budget() -> None:
    sup = Supervisor([Ticking(name="a", stop_timeout=3.0), Ticking(name="b", stop_timeout=3.0),
                      Ticking(name="c"), Ticking(name="d")], shutdown_timeout=4.0)
    assert [s.stages() for s in sup.services] == [(Stage("stop", 3.0),)] * 2 + [
        (Stage("stop", 4.0),)] * 2
    assert [s.stages()[0].default for s in sup.services] == [False, False, True, True]
    assert Ticking(name="e").stages() == (Stage("stop", 5.0),)  # unfitted: the declared one


@pytest.mark.parametrize("record", [
    StageRecord("svc", "stop", 5.0, 0.25, Outcome.TIMEOUT, "too slow", None, 1.5),
    StartRecord("svc", Outcome.OK, 0.5, 5.0, winner="primary"),
])
def test_an_event_built_from_its_record_equals_the_one_its_constructor_builds(record: object) -> None:
    cls = StageFinished if isinstance(record, StageRecord) else ServiceStarted
    event = cls.of(record)
    names = [n for n in ("stage", "outcome", "elapsed", "deadline", "error", "winner")
             if hasattr(event, n)]
    built = cls("svc", **{n: getattr(record, n) for n in names}, record=record, at=event.at)
    assert event == built
    assert event.to_dict() == built.to_dict()
    assert repr(event) == repr(built)
    assert event.record is record
    with pytest.raises(AttributeError):
        event.service = "other"  # type: ignore[misc]
