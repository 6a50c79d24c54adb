"""Lines of line protocol held as one ``bytes`` object: what the buffer, a request and a
spool row carry.

Why not a list of lines: a ``bytes`` object per line costs ~40 bytes of header and slot on
top of a ~50-byte line, and every hop (buffer, request body, spool row) would join or split
the lines again. A batch is joined once, at acceptance, and posted or stored as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Batch:
    """``count`` lines joined by ``\\n`` (no trailing newline) in ``data``."""

    data: bytes
    count: int

    @classmethod
    def of_lines(cls, lines: Sequence[bytes]) -> Batch:
        return cls(b"\n".join(lines), len(lines)) if lines else EMPTY

    @classmethod
    def join(cls, batches: Iterable[Batch]) -> Batch:
        parts = [b for b in batches if b.count]
        if len(parts) <= 1:
            return parts[0] if parts else EMPTY
        return cls(b"\n".join([b.data for b in parts]), sum(b.count for b in parts))

    @property
    def size(self) -> int:
        """Bytes as accounted against the caps: each line plus the newline that joins it."""
        return len(self.data) + 1 if self.count else 0

    def lines(self) -> list[bytes]:
        return self.data.split(b"\n") if self.count else []

    def split(self, k: int) -> tuple[Batch, Batch]:
        """The first ``k`` lines and the rest."""
        if k >= self.count:
            return self, EMPTY
        if k <= 0:
            return EMPTY, self
        rest = self.data.split(b"\n", k)[k]
        return Batch(self.data[:len(self.data) - len(rest) - 1], k), Batch(rest, self.count - k)

    def pieces(self, k: int) -> list[Batch]:
        """Consecutive batches of at most ``k`` lines (one pass, however large)."""
        if self.count <= k:
            return [self] if self.count else []
        lines = self.lines()
        return [Batch.of_lines(lines[i:i + k]) for i in range(0, len(lines), k)]


EMPTY = Batch(b"", 0)


def as_batch(lines: Sequence[bytes] | Batch) -> Batch:
    return lines if isinstance(lines, Batch) else Batch.of_lines(lines)
