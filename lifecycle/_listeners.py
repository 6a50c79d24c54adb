"""The supervisor's subscribers, and which of them each type of event reaches.

A close emits a few events per service, thousands in all, and most subscribers act on a
few types only (the recorder on the report's, the end-of-run table on ``CloseFinished``).
A subscriber that says so (an ``event_types`` attribute: the classes it acts on) is left
out for every other type; the list per type is built at that type's first event after a
change, so an event reaches only the subscribers that do something with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from .events import Event

__all__ = ["Listener", "Listeners", "only"]

Listener = Callable[[Event], None]


class Listeners:
    """The subscribers in subscribe order; ``for_type(cls)`` the ones an event of ``cls``
    goes to (a tuple: a subscriber added or removed during an emit does not change it)."""

    def __init__(self, listeners: Iterable[Listener]) -> None:
        self._all: list[Listener] = list(listeners)
        self._by_type: dict[type[Event], tuple[Listener, ...]] = {}

    def add(self, listener: Listener) -> Callable[[], None]:
        """Subscribe ``listener``; returns the function that unsubscribes it."""
        self._all.append(listener)
        self._by_type.clear()
        return partial(self._remove, listener)

    def _remove(self, listener: Listener) -> None:
        if listener in self._all:
            self._all.remove(listener)
            self._by_type.clear()

    def for_type(self, cls: type[Event]) -> tuple[Listener, ...]:
        found = self._by_type.get(cls)
        if found is None:
            found = self._by_type[cls] = tuple(
                listener for listener in self._all if _wants(listener, cls))
        return found


def _wants(listener: Listener, cls: type[Event]) -> bool:
    types: Any = getattr(listener, "event_types", None)
    return types is None or issubclass(cls, tuple(types))


def only(types: Iterable[type[Event]], fn: Listener) -> Listener:
    """``fn`` as a subscriber of the events of ``types`` (and their subclasses) only."""
    return _Only(frozenset(types), fn)


class _Only:
    def __init__(self, event_types: frozenset[type[Event]], fn: Listener) -> None:
        self.event_types = event_types
        self.fn = fn

    def __call__(self, event: Event) -> None:
        self.fn(event)

    def __repr__(self) -> str:
        return f"only({sorted(t.__name__ for t in self.event_types)}, {self.fn!r})"
