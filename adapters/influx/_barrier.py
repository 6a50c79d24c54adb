"""What ``flush()`` waits for: work out of the buffer when it had emptied the buffer.

Why numbered tickets: batches leave the buffer for a request or a spool commit and come
back resolved in any order. Once a flush has emptied the buffer, every point accepted
before the call is written, committed, or in a batch already out (a sender may have taken
it after the call began); the flush waits for those tickets, not for whatever keeps
leaving after, or it would never return under a steady stream of writes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import anyio


class Tickets:
    """Numbers each piece of work out of the buffer; waits for those up to a number."""

    def __init__(self) -> None:
        self.issued = 0
        self._open: set[int] = set()
        self._changed: anyio.Event | None = None

    @contextlib.contextmanager
    def ticket(self) -> Iterator[int]:
        self.issued += 1
        number = self.issued
        self._open.add(number)
        try:
            yield number
        finally:
            self._open.discard(number)
            if self._changed is not None:
                self._changed.set()
                self._changed = None

    def pending(self, upto: int) -> bool:
        return any(n <= upto for n in self._open)

    async def wait(self, upto: int) -> None:
        """Until every ticket numbered ``upto`` or lower is settled."""
        while self.pending(upto):
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()
