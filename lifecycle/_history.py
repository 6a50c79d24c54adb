"""Bounded history: exact counts of every record, the detail of the first and last few.

A daemon meant to run for months must not grow with every failure of a flapping service.
:class:`History` keeps, per service, the first ``keep_first`` and the last ``keep_last``
records (the first show how it began, the last what it does now) and counts the rest, so
memory is bounded by (number of services) x (keep_first + keep_last) records, each of
them size-capped (see :func:`cap_text`), whatever the run length.
"""

from __future__ import annotations

import heapq
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, Protocol, TypeVar, overload

#: Records kept in detail per service and kind: the first few and the most recent.
KEEP_FIRST = 5
KEEP_LAST = 20


class _Keyed(Protocol):
    @property
    def service(self) -> str: ...


R = TypeVar("R", bound=_Keyed)


def cap_text(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters: its start and its end (where a traceback
    names the exception) with how much was left out between them."""
    if len(text) <= limit:
        return text
    head = limit // 4
    tail = limit - head
    return (f"{text[:head]}\n... {len(text) - head - tail} characters left out ...\n"
            f"{text[-tail:]}")


class History(Generic[R]):
    """A list-like record of events per service, bounded (module docstring). Thread-safe:
    failures are recorded from threads too.

    Iterating, ``len()`` and indexing see the kept records in the order they were added;
    :meth:`total` and :meth:`omitted` give the exact counts.
    """

    def __init__(self, records: Iterable[R] = (), *, keep_first: int = KEEP_FIRST,
                 keep_last: int = KEEP_LAST, on_add: Callable[[R], None] | None = None) -> None:
        self.keep_first = keep_first
        self.keep_last = keep_last
        self.on_add = on_add
        self._lock = threading.Lock()
        self._seq = 0
        self._first: dict[str, list[tuple[int, R]]] = {}
        self._last: dict[str, deque[tuple[int, R]]] = {}
        self._total: dict[str, int] = {}
        for record in records:
            self.append(record)

    def append(self, record: R) -> None:
        with self._lock:
            service = record.service
            self._seq += 1
            self._total[service] = self._total.get(service, 0) + 1
            first = self._first.setdefault(service, [])
            if len(first) < self.keep_first:
                first.append((self._seq, record))
            else:
                last = self._last.get(service)
                if last is None:
                    last = self._last[service] = deque(maxlen=self.keep_last)
                last.append((self._seq, record))
            if self.on_add is not None:
                self.on_add(record)

    def total(self, service: str | None = None) -> int:
        """How many were added (for ``service``, or in all): exact, kept or not."""
        if service is not None:
            return self._total.get(service, 0)
        return sum(self._total.values())

    def omitted(self) -> dict[str, int]:
        """Per service, how many records were counted but not kept in detail (only > 0)."""
        with self._lock:
            kept = {s: len(self._first.get(s, ())) + len(self._last.get(s, ())) for s in self._total}
            return {s: n - kept[s] for s, n in self._total.items() if n > kept[s]}

    def _kept(self) -> list[R]:
        with self._lock:
            runs = [*self._first.values(), *(list(d) for d in self._last.values())]
        return [record for _, record in heapq.merge(*runs, key=lambda item: item[0])]

    def __iter__(self) -> Iterator[R]:
        return iter(self._kept())

    def __len__(self) -> int:
        with self._lock:
            return sum(map(len, self._first.values())) + sum(map(len, self._last.values()))

    def __bool__(self) -> bool:
        return bool(self._total)

    @overload
    def __getitem__(self, index: int) -> R: ...
    @overload
    def __getitem__(self, index: slice) -> list[R]: ...
    def __getitem__(self, index: int | slice) -> R | list[R]:
        return self._kept()[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (History, list, tuple)):
            return self._kept() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"History({self._kept()!r}, total={self.total()})"

    def to_list(self, convert: Callable[[R], Any]) -> list[Any]:
        return [convert(record) for record in self._kept()]
