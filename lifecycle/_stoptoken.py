"""``StopToken``: when one start attempt of a service is told to stop, and why.

The runtime makes a fresh token for each start attempt and hands it to the service; the
service's ``sleep()``, ``wait_shutdown()``, ``shutting_down`` and ``wait_drained()`` read
it. A token set for a restart is never reused: the restart's attempt brings a new one.
"""

from __future__ import annotations

import enum

import anyio
import anyio.lowlevel


class Stop(enum.Enum):
    """Why a token was set."""

    RESTART = "restart"  # stopped to start again (a fresh token comes with the new start)
    FOR_GOOD = "for good"  # the close, or a failed attempt whose work is discarded


class StopToken:
    """Set once shutdown is announced to one attempt; the drain's end is its second step."""

    __slots__ = ("_drain_over", "_drained", "_event", "why")

    def __init__(self) -> None:
        self.why: Stop | None = None  # None until set; FOR_GOOD, once set, stays
        self._event: anyio.Event | None = None  # made on the first wait: most never wait
        self._drained: anyio.Event | None = None  # made on the first wait_drained()
        self._drain_over = False

    def set(self, why: Stop) -> None:
        if self.why is not Stop.FOR_GOOD:
            self.why = why
        if self._event is not None:
            self._event.set()

    def is_set(self) -> bool:
        return self.why is not None

    async def wait(self) -> None:
        if self._event is None:
            self._event = anyio.Event()
            if self.why is not None:
                self._event.set()
        await self._event.wait()

    def end_drain(self) -> None:
        """The drain is over (or there was none): the stop stages come next."""
        self._drain_over = True
        if self._drained is not None:
            self._drained.set()

    async def wait_drained(self) -> None:
        if self._drain_over:
            await anyio.lowlevel.checkpoint()
            return
        if self._drained is None:
            self._drained = anyio.Event()
        await self._drained.wait()
