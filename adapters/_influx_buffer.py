"""The writer's in-memory buffer: lines in acceptance order, bounded in points and bytes.

Why its own class: the caps are the memory guarantee of the writer, so the arithmetic
(a line costs its length plus the newline that joins it into a request body) lives in
one place and is tested through the writer's counters.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator, Sequence


class LineBuffer:
    """FIFO of encoded lines with point and byte accounting against ``max_points`` and
    ``max_bytes``; ``first_at`` is when the oldest waiting line arrived (monotonic)."""

    def __init__(self, max_points: int, max_bytes: int) -> None:
        self.max_points = max_points
        self.max_bytes = max_bytes
        self.bytes = 0
        self.first_at = 0.0
        self._lines: deque[bytes] = deque()

    def __len__(self) -> int:
        return len(self._lines)

    def __bool__(self) -> bool:
        return bool(self._lines)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._lines)

    def extend(self, lines: Sequence[bytes]) -> None:
        if not self._lines:
            self.first_at = time.monotonic()
        self._lines.extend(lines)
        self.bytes += sum(map(len, lines)) + len(lines)

    def take(self, n: int) -> list[bytes]:
        """The oldest ``n`` lines (fewer if there are fewer), removed."""
        lines = self._lines
        out = [lines.popleft() for _ in range(min(n, len(lines)))]
        self.bytes = self.bytes - sum(map(len, out)) - len(out) if lines else 0
        return out

    def unshift(self, lines: Sequence[bytes]) -> None:
        """Put lines back in front (an interrupted delivery): they stay the oldest."""
        if lines:
            if not self._lines:
                self.first_at = time.monotonic()
            self._lines.extendleft(reversed(lines))
            self.bytes += sum(map(len, lines)) + len(lines)

    def fitting(self, lines: Sequence[bytes]) -> Sequence[bytes]:
        """The longest prefix of ``lines`` that fits under both caps."""
        room, used, keep = self.max_points - len(self._lines), self.bytes, 0
        for line in lines:
            used += len(line) + 1
            if keep >= room or used > self.max_bytes:
                break
            keep += 1
        return lines[:keep]

    def over_cap(self) -> bool:
        return len(self._lines) > self.max_points or self.bytes > self.max_bytes

    def high_water(self) -> bool:
        """Three quarters full: time for the spiller to move the oldest lines to disk."""
        return (len(self._lines) > self.max_points * 3 // 4
                or self.bytes > self.max_bytes * 3 // 4)
