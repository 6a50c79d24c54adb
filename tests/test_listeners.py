"""Which subscribers an event reaches: every plain one, and the ones whose ``event_types``
name its class (or a base of it), in subscribe order, as the subscribers were at emit."""

from __future__ import annotations

import pytest

from lifecycle import Service, Supervisor
from lifecycle._listeners import only
from lifecycle.events import CloseFinished, CloseStarted, Event, ServiceStopped

pytestmark = pytest.mark.anyio


class Quiet(Service):
    pass


async def test_a_subscriber_with_event_types_gets_those_only_and_in_subscribe_order() -> None:
    sup = Supervisor([Quiet(name="a"), Quiet(name="b")], leak_check=False, log_report=False)
    seen: list[tuple[str, str]] = []
    sup.subscribe(lambda e: seen.append(("all", e.kind)))
    sup.subscribe(only((ServiceStopped, CloseFinished), lambda e: seen.append(("some", e.kind))))
    sup.subscribe(only((Event,), lambda e: seen.append(("base", e.kind))))
    async with sup:
        pass
    kinds = [kind for who, kind in seen if who == "all"]
    assert [kind for who, kind in seen if who == "base"] == kinds
    assert [kind for who, kind in seen if who == "some"] == [
        k for k in kinds if k in ("ServiceStopped", "CloseFinished")] == [
        "ServiceStopped", "ServiceStopped", "CloseFinished"]
    at = seen.index(("all", "CloseFinished"))
    assert seen[at:at + 3] == [("all", "CloseFinished"), ("some", "CloseFinished"),
                               ("base", "CloseFinished")]


async def test_a_subscriber_added_or_removed_during_an_event_counts_from_the_next_one() -> None:
    sup = Supervisor([Quiet(name="a")], leak_check=False, log_report=False)
    late: list[str] = []
    undo: list[object] = []

    def on_close_started(event: Event) -> None:
        undo.append(sup.subscribe(lambda e: late.append(e.kind)))

    def stop_listening(event: Event) -> None:
        late.append("unsubscribed")
        undo[0]()  # type: ignore[operator]

    sup.subscribe(only((CloseStarted,), on_close_started))
    sup.subscribe(only((CloseFinished,), stop_listening))
    async with sup:
        pass
    assert late[0] != "CloseStarted"
    assert late[-2:] == ["unsubscribed", "CloseFinished"]  # still in the tuple of its emit
    assert "Stopped" not in late
