"""Exact counters of where every accepted point is, and their snapshot ``InfluxStats``.

Why a lock: the spool runs in worker threads and updates the counters in the same thread
right after its transaction commits (so a cancelled await cannot lose the update); the
lock makes every move between counters atomic, so a snapshot always balances.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field, fields
from typing import Any

#: The counters that hold this process's accepted points; they always add up to accepted.
LOCATIONS = ("written", "buffered", "in_spool", "dead_lettered", "dropped")


@dataclass(frozen=True)
class InfluxStats:
    """Counters, in points (except ``retried``: requests).

    The invariant, for points accepted by *this* process::

        accepted == written + buffered + in_spool + dead_lettered + dropped

    - ``written``: acknowledged by the server (directly, or replayed from the spool).
    - ``buffered``: in memory (the buffer, requests in flight, a spill in progress).
    - ``in_spool``: committed to the spool and not yet replayed.
    - ``dead_lettered``: refused by the server as a client error (in the dead-letter table).
    - ``dropped``: lost, each with a reason in ``dropped_reasons`` (``spool_full``,
      ``disk_full``, ``buffer_full`` with a drop policy, ``shutdown``).

    Flow counters: ``spooled`` (moved to the spool, ever), ``replayed`` (delivered from the
    spool, any origin), ``retried`` (requests repeated after a retryable failure),
    ``rejected`` (records refused by ``write()``: invalid, or written after stop began; not
    part of ``accepted``).

    Points spooled by an *earlier* process are outside the invariant: ``inherited`` is what
    was in the spool when this one started; ``inherited_written``,
    ``inherited_dead_lettered`` and ``inherited_lost`` (unreadable in a damaged spool file,
    see ``quarantined``) what became of them so far.

    ``quarantined`` counts damaged spool files moved aside; their lost points are in
    ``dropped`` (reason ``spool_corrupt``) or ``inherited_lost``.
    """

    accepted: int = 0
    written: int = 0
    buffered: int = 0
    in_spool: int = 0
    dead_lettered: int = 0
    dropped: int = 0
    spooled: int = 0
    replayed: int = 0
    retried: int = 0
    rejected: int = 0
    inherited: int = 0
    inherited_written: int = 0
    inherited_dead_lettered: int = 0
    inherited_lost: int = 0
    quarantined: int = 0
    dropped_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def balanced(self) -> bool:
        return self.accepted == sum(int(getattr(self, name)) for name in LOCATIONS)

    @property
    def spool_backlog(self) -> int:
        """Points waiting in the spool, whatever process spooled them."""
        return self.in_spool + self.inherited - self.inherited_written \
            - self.inherited_dead_lettered - self.inherited_lost

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["spool_backlog"] = self.spool_backlog
        out["balanced"] = self.balanced
        return out


_NAMES = tuple(f.name for f in fields(InfluxStats) if f.name != "dropped_reasons")


class Counters:
    """The mutable side of :class:`InfluxStats`, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(_NAMES, 0)
        self._reasons: dict[str, int] = {}

    def add(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                self._values[name] += delta

    def drop(self, n: int, reason: str, *, source: str = "buffered") -> None:
        """Move ``n`` points from ``source`` to ``dropped``, remembering why."""
        if n <= 0:
            return
        with self._lock:
            self._values[source] -= n
            self._values["dropped"] += n
            self._reasons[reason] = self._reasons.get(reason, 0) + n

    def get(self, name: str) -> int:
        return self._values[name]

    def snapshot(self) -> InfluxStats:
        with self._lock:
            return InfluxStats(**self._values, dropped_reasons=dict(self._reasons))
