"""The writer's in-memory buffer: batches in acceptance order, bounded in points and bytes.

Why its own class: the caps are the memory guarantee of the writer, so the arithmetic
lives in one place. The caps cover everything the writer holds in memory, not only what
waits here: a batch taken out for a request, for a spill or for a replay stays counted
(``held``) until it is released. Lines are kept as joined batches (one ``bytes`` object
per write call, small writes coalesced into one growing tail), so what is counted (each
line plus its newline) is what is held, give or take a few dozen bytes per batch.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterator

from ..spool import EMPTY, Batch

#: Batches up to this size are appended to the tail instead of kept as objects of their own.
SMALL = 4096
#: The tail becomes a batch of its own at this size.
TAIL_MAX = 256 * 1024


class LineBuffer:
    """FIFO of batches with point and byte accounting against ``max_points`` and
    ``max_bytes``; ``first_at`` is when the oldest waiting line arrived (monotonic)."""

    def __init__(self, max_points: int, max_bytes: int) -> None:
        self.max_points = max_points
        self.max_bytes = max_bytes
        self.points = 0  # waiting here
        self.bytes = 0
        self.held_points = 0  # taken out and not released yet (in flight, being spilled)
        self.held_bytes = 0
        self.first_at = 0.0
        self._batches: deque[Batch] = deque()
        self._tail = bytearray()
        self._tail_count = 0

    def __len__(self) -> int:
        return self.points

    def __bool__(self) -> bool:
        return self.points > 0

    def __iter__(self) -> Iterator[bytes]:
        """The waiting lines, oldest first (for inspection and tests)."""
        for batch in self._batches:
            yield from batch.lines()
        if self._tail_count:
            yield from bytes(self._tail).split(b"\n")

    # ----- adding and taking ------------------------------------------------------------
    def add(self, batch: Batch) -> None:
        if not batch.count:
            return
        if not self.points:
            self.first_at = time.monotonic()
        self.points += batch.count
        self.bytes += batch.size
        if batch.size <= SMALL:
            if self._tail_count:
                self._tail += b"\n"
            self._tail += batch.data
            self._tail_count += batch.count
            if len(self._tail) >= TAIL_MAX:
                self._seal()
        else:
            self._seal()
            self._batches.append(batch)

    def take(self, n: int) -> Batch:
        """The oldest ``n`` lines (fewer if there are fewer), removed, as one batch."""
        return Batch.join(self.take_batches(n))

    def take_batches(self, n: int) -> list[Batch]:
        """The oldest ``n`` lines (fewer if there are fewer), removed, as stored (only the
        last batch is split, nothing is joined)."""
        parts = []
        need = n
        while need > 0:
            if not self._batches:
                if not self._tail_count:
                    break
                self._seal()
            first = self._batches[0]
            if first.count <= need:
                parts.append(self._batches.popleft())
                need -= first.count
            else:
                head, self._batches[0] = first.split(need)
                parts.append(head)
                need = 0
        self.points -= sum(b.count for b in parts)
        self.bytes = self.bytes - sum(b.size for b in parts) if self.points else 0
        return parts

    def drain(self) -> list[Batch]:
        """Everything waiting, as it is stored (no copy), removed."""
        self._seal()
        out = list(self._batches)
        self._batches.clear()
        self.points = self.bytes = 0
        return out

    def unshift(self, batch: Batch) -> None:
        """Put lines back in front (an interrupted delivery): they stay the oldest."""
        if batch.count:
            if not self.points:
                self.first_at = time.monotonic()
            self._batches.appendleft(batch)
            self.points += batch.count
            self.bytes += batch.size

    def _seal(self) -> None:
        if self._tail_count:
            self._batches.append(Batch(bytes(self._tail), self._tail_count))
            self._tail = bytearray()
            self._tail_count = 0

    # ----- what is held outside the buffer ------------------------------------------------
    def hold(self, batch: Batch) -> None:
        """Count ``batch`` against the caps while it is in memory outside the buffer."""
        self.held_points += batch.count
        self.held_bytes += batch.size

    def release(self, batch: Batch) -> None:
        self.held_points -= batch.count
        self.held_bytes -= batch.size

    @contextlib.contextmanager
    def holding(self, batch: Batch) -> Iterator[Batch]:
        """:meth:`hold` ``batch`` for the duration of the block."""
        self.hold(batch)
        try:
            yield batch
        finally:
            self.release(batch)

    # ----- caps -------------------------------------------------------------------------
    def fitting(self, batch: Batch) -> Batch:
        """The longest prefix of ``batch`` that fits under both caps."""
        room = self.max_points - self.points - self.held_points
        used = self.bytes + self.held_bytes
        if batch.count <= room and used + batch.size <= self.max_bytes:
            return batch
        keep = 0
        for line in batch.lines():
            used += len(line) + 1
            if keep >= room or used > self.max_bytes:
                break
            keep += 1
        return batch.split(keep)[0] if keep else EMPTY

    def over_cap(self, points: int = 0, size: int = 0) -> bool:
        """Would ``points`` more lines of ``size`` bytes put the held total over a cap?"""
        return (self.points + self.held_points + points > self.max_points
                or self.bytes + self.held_bytes + size > self.max_bytes)

    def high_water(self) -> bool:
        """Three quarters full: time for the spiller to move the oldest lines to disk."""
        return self.points > 0 and (
            self.points + self.held_points > self.max_points * 3 // 4
            or self.bytes + self.held_bytes > self.max_bytes * 3 // 4)

    def above_half(self) -> int:
        """Waiting lines to take so that what is held is back to half the caps (the
        spiller's target: one trip to disk per wake, however fast points come in)."""
        if not self.points:
            return 0
        return min(max(self.lines_over(self.max_points // 2, self.max_bytes // 2), 0),
                   self.points)

    def lines_over(self, max_points: int, max_bytes: int, points: int = 0, size: int = 0
                   ) -> int:
        """How many of the oldest waiting lines to shed so that what is held, plus
        ``points`` more lines of ``size`` bytes, fits ``max_points`` and ``max_bytes`` (the
        byte excess turned into lines at the waiting lines' average size); 0 or less when
        it fits already."""
        n = self.points + self.held_points + points - max_points
        over = self.bytes + self.held_bytes + size - max_bytes
        if over > 0 and self.bytes:
            n = max(n, -(-over * self.points // self.bytes))
        return n


def admit(buf: LineBuffer, batches: list[Batch], when_full: str, batch_size: int, *,
          spill: Callable[[Batch], None], drop: Callable[[int], None]) -> int:
    """Add a write's batches to ``buf`` under its caps; returns the lines kept.

    ``drop_newest`` keeps the longest prefix that fits. Otherwise room is made first, for
    the whole write, so the caps hold at every moment: the oldest lines are spilled
    (``spill``, inline: backpressure on the caller) or dropped (``drop``), ``batch_size``
    at a time; a write larger than the caps empties the buffer, then sheds its own oldest
    lines.
    """
    kept = 0
    if when_full == "drop_newest":
        total = sum(b.count for b in batches)
        for batch in batches:
            fit = buf.fitting(batch)
            buf.add(fit)
            kept += fit.count
            if fit.count < batch.count:
                drop(total - kept)
                break
        return kept
    make_room(buf, when_full, batch_size, sum(b.count for b in batches),
              sum(b.size for b in batches), spill=spill, drop=drop)
    for batch in batches:
        buf.add(batch)
        kept += batch.count
        make_room(buf, when_full, batch_size, spill=spill, drop=drop)
    return kept


def make_room(buf: LineBuffer, when_full: str, batch_size: int, points: int = 0,
              size: int = 0, *, spill: Callable[[Batch], None],
              drop: Callable[[int], None]) -> None:
    """Shed the oldest waiting lines until ``points`` more lines of ``size`` bytes fit."""
    while buf and buf.over_cap(points, size):
        if when_full == "spool":
            spill(buf.take(batch_size))
            continue
        excess = buf.lines_over(buf.max_points, buf.max_bytes, points, size)
        drop(buf.take(max(excess, 1)).count)
